//! A small C lexer for comparing and showing fragments of source on tokens: comments and
//! whitespace are dropped, everything else is kept as written.

/// The tokens of `text`: identifiers and numbers, string and character literals, and every other
/// non-space character on its own. Comments (`/* */`, `//`) and whitespace are skipped.
pub fn tokens(text: &str) -> Vec<&str> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        let start = i;
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        if c == b'/' && bytes.get(i + 1) == Some(&b'*') {
            i = text[i + 2..]
                .find("*/")
                .map_or(bytes.len(), |end| i + 2 + end + 2);
            continue;
        }
        if c == b'/' && bytes.get(i + 1) == Some(&b'/') {
            i = text[i..].find('\n').map_or(bytes.len(), |end| i + end);
            continue;
        }
        if c.is_ascii_alphanumeric() || c == b'_' || c >= 0x80 {
            while i < bytes.len()
                && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_' || bytes[i] >= 0x80)
            {
                i += 1;
            }
        } else if c == b'"' || c == b'\'' {
            i += 1;
            while i < bytes.len() && bytes[i] != c && bytes[i] != b'\n' {
                i += if bytes[i] == b'\\' { 2 } else { 1 };
            }
            i = (i + 1).min(bytes.len());
        } else {
            i += 1;
        }
        // Multi-byte UTF-8 sequences are consumed whole above; `get` guards the boundaries.
        if let Some(token) = text.get(start..i) {
            out.push(token);
        }
    }
    out
}

/// `text` as its tokens joined by single spaces, with the spaces around punctuation a reader
/// expects removed (`int *p`, `f(a, b)`), for showing short fragments in messages.
pub fn compact(text: &str) -> String {
    let mut out = String::new();
    let mut previous: Option<&str> = None;
    for token in tokens(text) {
        if let Some(prev) = previous {
            let word = |t: &str| {
                t.bytes()
                    .next()
                    .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'"')
            };
            let tight_before = matches!(token, "," | ";" | ")" | "]" | "(" | "[" | ".")
                || matches!(prev, "(" | "[" | "." | "*" | "&" | "~" | "!");
            let space = !tight_before && (word(prev) || word(token) || prev == ",");
            if space || (prev == "," && !matches!(token, ")")) || token == "=" || prev == "=" {
                out.push(' ');
            }
        }
        out.push_str(token);
        previous = Some(token);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comments_and_whitespace_do_not_count() {
        assert_eq!(
            tokens("int  /* c */ a = 1; // x\n"),
            ["int", "a", "=", "1", ";"]
        );
        assert_eq!(tokens("\"a /* b\" 'c'"), ["\"a /* b\"", "'c'"]);
        assert_eq!(tokens("/* open"), Vec::<&str>::new());
        assert_eq!(tokens("\"open"), ["\"open"]);
    }

    #[test]
    fn compact_reads_naturally() {
        assert_eq!(compact("int   x"), "int x");
        assert_eq!(
            compact("static int *p = { 1 ,2 }"),
            "static int *p = { 1, 2 }"
        );
        assert_eq!(compact("int f ( int a , long b )"), "int f(int a, long b)");
    }
}
