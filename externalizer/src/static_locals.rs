//! Binding the `static` locals of a patched function to the running process's storage.
//!
//! `static int n = 0;` inside `count` becomes `extern int n __asm__("__hp_static.count.n");`: the
//! patch code then refers to an undefined symbol that the builder turns into a manifest binding
//! (`StaticLocal { function, name, file }`) and the applier resolves to the original variable.
//! Read-only locals (`static const int t[] = {...}`) keep their definition: a private copy holds
//! the same values. Line numbers stay put: removed initializers keep their newlines.

use std::ops::Range;

use hotpatch_differ::index::{Index, Item, ItemKind};

use crate::edits::{newlines_of, Edits};
use crate::ExternalizeError;

/// One static local of a patched function, bound to the running process's storage.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct StaticLocalBinding {
    /// The undefined symbol the patch unit uses for it (an assembler label).
    pub symbol: String,
    /// The function declaring it.
    pub function: String,
    /// The variable's name.
    pub name: String,
}

/// The assembler label a static local `name` of `function` gets in a patch unit.
pub fn label(function: &str, name: &str) -> String {
    format!("__hp_static.{function}.{name}")
}

/// Rewrites every static local of the function definition `item` into an `extern` declaration
/// bound to the original storage, adding the edits to `edits`. Returns the bindings made.
pub fn bind(
    file: &str,
    source: &str,
    item: &Item,
    edits: &mut Edits,
) -> Result<Vec<StaticLocalBinding>, ExternalizeError> {
    let Some(function) = item.name() else {
        return Ok(Vec::new());
    };
    let Some(body) = item.body.clone() else {
        return Ok(Vec::new());
    };
    let mut out: Vec<StaticLocalBinding> = Vec::new();
    let mut done_lines: Vec<u32> = Vec::new();
    for local in &item.static_locals {
        let refuse = |why: &str| ExternalizeError::StaticLocal {
            local: local.name.clone(),
            function: function.to_string(),
            file: file.to_string(),
            line: local.line,
            why: why.to_string(),
        };
        if done_lines.contains(&local.line) {
            continue; // one declaration declaring several locals: rewritten as a whole
        }
        if item
            .static_locals
            .iter()
            .filter(|l| l.name == local.name)
            .count()
            > 1
        {
            return Err(refuse(
                "the function declares two static locals of this name, so the running storage of each cannot be told apart",
            ));
        }
        let range = declaration_range(source, &body, local.line)
            .ok_or_else(|| refuse("its declaration could not be located in the source"))?;
        let text = source.get(range.clone()).unwrap_or("");
        let index = Index::parse(text);
        let Some(decl) = index
            .items
            .iter()
            .find(|i| i.kind == ItemKind::Declaration && i.static_keyword.is_some())
        else {
            return Err(refuse("its declaration could not be parsed"));
        };
        done_lines.push(local.line);
        if decl.read_only && decl.declarators.iter().all(|d| d.read_only) {
            continue; // a private copy holds the same constant values
        }
        if let Some(kw) = decl.static_keyword.clone() {
            edits.replace(shift(&kw, range.start), "extern");
        }
        let mut cursor = 0usize;
        for declarator in decl.declarators.iter().filter(|d| !d.is_function) {
            let symbol = label(function, &declarator.name);
            let at = match declarator.initializer.clone() {
                Some(init) => {
                    edits.replace(
                        shift(&init, range.start),
                        format!(
                            "__asm__(\"{symbol}\"){}",
                            newlines_of(text.get(init.clone()).unwrap_or(""))
                        ),
                    );
                    cursor = init.end;
                    None
                }
                None => {
                    let from = text
                        .get(cursor..)
                        .and_then(|t| t.find(declarator.name.as_str()))
                        .map_or(cursor, |p| cursor + p + declarator.name.len());
                    let end = declarator_end(text, from);
                    cursor = end;
                    Some(end)
                }
            };
            if let Some(at) = at {
                edits.insert(range.start + at, format!(" __asm__(\"{symbol}\")"));
            }
            cursor = separator_after(text, cursor);
            out.push(StaticLocalBinding {
                symbol,
                function: function.to_string(),
                name: declarator.name.clone(),
            });
        }
    }
    Ok(out)
}

fn shift(range: &Range<usize>, by: usize) -> Range<usize> {
    range.start + by..range.end + by
}

/// The byte range of the `static` declaration starting on `line` inside `body`: from the
/// `static` keyword to its `;`.
fn declaration_range(source: &str, body: &Range<usize>, line: u32) -> Option<Range<usize>> {
    let line_start = if line <= 1 {
        0
    } else {
        source
            .match_indices('\n')
            .nth(usize::try_from(line).ok()? - 2)
            .map(|(i, _)| i + 1)?
    };
    let search_from = line_start.max(body.start);
    let region = source.get(search_from..body.end)?;
    let bytes = region.as_bytes();
    let mut at = None;
    for (i, _) in region.match_indices("static") {
        let before = i.checked_sub(1).map(|j| bytes[j]);
        let after = bytes.get(i + 6).copied();
        let word = |b: Option<u8>| b.is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !word(before) && !word(after) {
            at = Some(i);
            break;
        }
    }
    let start = at?;
    let end = statement_end(region, start)?;
    Some(search_from + start..search_from + end + 1)
}

/// Index of the `;` ending the statement that starts at `from`, skipping nested brackets,
/// string and character literals.
fn statement_end(text: &str, from: usize) -> Option<usize> {
    let bytes = text.as_bytes();
    let mut depth = 0i32;
    let mut i = from;
    while i < bytes.len() {
        match bytes[i] {
            b'"' | b'\'' => i = skip_literal(bytes, i),
            b'(' | b'[' | b'{' => depth += 1,
            b')' | b']' | b'}' => depth -= 1,
            b';' if depth <= 0 => return Some(i),
            _ => {}
        }
        i += 1;
    }
    None
}

/// Where a declarator without initializer ends: the next `,` or `;` at bracket depth 0.
fn declarator_end(text: &str, from: usize) -> usize {
    let bytes = text.as_bytes();
    let mut depth = 0i32;
    let mut i = from;
    while i < bytes.len() {
        match bytes[i] {
            b'(' | b'[' => depth += 1,
            b')' | b']' => depth -= 1,
            b',' | b';' if depth <= 0 => return i,
            _ => {}
        }
        i += 1;
    }
    bytes.len()
}

/// The position just after the next top-level `,` (or the end) from `from`.
fn separator_after(text: &str, from: usize) -> usize {
    let end = declarator_end(text, from);
    (end + 1).min(text.len())
}

/// The index of the last byte of the literal opening at `open`.
fn skip_literal(bytes: &[u8], open: usize) -> usize {
    let quote = bytes[open];
    let mut i = open + 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 1,
            b if b == quote => return i,
            _ => {}
        }
        i += 1;
    }
    bytes.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rewrite(source: &str) -> (String, Vec<StaticLocalBinding>) {
        let index = Index::parse(source);
        let item = index
            .items
            .iter()
            .find(|i| i.kind == ItemKind::Function)
            .unwrap();
        let mut edits = Edits::default();
        let bindings = bind("lib.c", source, item, &mut edits).unwrap();
        (edits.apply(source), bindings)
    }

    #[test]
    fn initialised_and_plain_locals_become_bound_externs() {
        let (text, b) = rewrite(
            "int f(void)\n{\n    static int a = 3, b[2], c = { 1 };\n    static char *s;\n    return a + b[0] + c + !s;\n}\n",
        );
        assert!(
            text.contains("extern int a __asm__(\"__hp_static.f.a\"), b[2] __asm__(\"__hp_static.f.b\"), c __asm__(\"__hp_static.f.c\");"),
            "{text}"
        );
        assert!(
            text.contains("extern char *s __asm__(\"__hp_static.f.s\");"),
            "{text}"
        );
        let names: Vec<_> = b.iter().map(|b| b.name.as_str()).collect();
        assert_eq!(names, ["a", "b", "c", "s"]);
        assert_eq!(text.lines().count(), 6);
    }

    #[test]
    fn read_only_locals_are_kept_and_multiline_initialisers_keep_lines() {
        let (text, b) = rewrite(
            "int f(int i)\n{\n    static const int t[] = {\n        1, 2 };\n    static int n = (\n 4);\n    return t[i] + n++;\n}\n",
        );
        assert!(text.contains("static const int t[] = {"), "{text}");
        assert!(
            text.contains("extern int n __asm__(\"__hp_static.f.n\")\n;"),
            "{text}"
        );
        assert_eq!(b.len(), 1);
        assert_eq!(text.lines().count(), 8);
    }

    #[test]
    fn two_locals_of_one_name_are_refused() {
        let source = "int f(int i)\n{\n    if (i) { static int n; return n++; }\n    { static int n; return n--; }\n}\n";
        let index = Index::parse(source);
        let item = &index.items[0];
        let err = bind("lib.c", source, item, &mut Edits::default()).unwrap_err();
        assert!(err.to_string().contains("two static locals"), "{err}");
    }
}
