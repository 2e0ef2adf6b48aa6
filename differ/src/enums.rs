//! The values of an enum's enumerators, computed from the source as the compiler would for the
//! simple forms real code uses, so a change can be judged by the numbers the process holds.

use std::collections::HashMap;

use crate::tokens::tokens;

/// Each enumerator of a list, in order, with its value: `None` where the source does not say it
/// in a form computed here (a macro, a `sizeof`, a cast ...), and for every implicit value after it.
/// `list` holds (name, value expression as written) pairs.
pub fn values(list: &[(String, Option<String>)]) -> Vec<(String, Option<i64>)> {
    let mut known: HashMap<&str, i64> = HashMap::new();
    let mut next = Some(0i64);
    let mut out = Vec::new();
    for (name, expression) in list {
        let value = match expression {
            Some(text) => evaluate(&tokens(text), &known),
            None => next,
        };
        if let Some(v) = value {
            known.insert(name, v);
        }
        next = value.and_then(|v| v.checked_add(1));
        out.push((name.clone(), value));
    }
    out
}

/// The value of a constant expression of integer literals and earlier enumerators joined by
/// `+ - * << >> | &` (left to right, as C's precedence gives for one operator kind), unary minus
/// and parentheses around the whole; `None` for anything else.
fn evaluate(tokens: &[&str], known: &HashMap<&str, i64>) -> Option<i64> {
    let tokens = match tokens {
        ["(", inner @ .., ")"] => inner,
        all => all,
    };
    let (mut value, mut rest) = operand(tokens, known)?;
    let mut operator: Option<&str> = None;
    while let Some((first, tail)) = rest.split_first() {
        // `<<` and `>>` arrive as two tokens.
        let (op, tail) = match (*first, tail.first()) {
            ("<", Some(&"<")) => ("<<", &tail[1..]),
            (">", Some(&">")) => (">>", &tail[1..]),
            (op @ ("+" | "-" | "*" | "|" | "&"), _) => (op, tail),
            _ => return None,
        };
        // Mixed operators would need C's precedence: only one kind is computed here.
        if operator.is_some_and(|o| o != op) {
            return None;
        }
        operator = Some(op);
        let (right, after) = operand(tail, known)?;
        value = match op {
            "+" => value.checked_add(right)?,
            "-" => value.checked_sub(right)?,
            "*" => value.checked_mul(right)?,
            "<<" => value.checked_shl(u32::try_from(right).ok()?)?,
            ">>" => value.checked_shr(u32::try_from(right).ok()?)?,
            "|" => value | right,
            _ => value & right,
        };
        rest = after;
    }
    Some(value)
}

/// One operand at the start of `tokens`: a literal, an earlier enumerator, or either negated.
fn operand<'t, 'a>(
    tokens: &'t [&'a str],
    known: &HashMap<&str, i64>,
) -> Option<(i64, &'t [&'a str])> {
    match tokens {
        ["-", token, rest @ ..] => Some((atom(token, known)?.checked_neg()?, rest)),
        [token, rest @ ..] => Some((atom(token, known)?, rest)),
        [] => None,
    }
}

fn atom(token: &str, known: &HashMap<&str, i64>) -> Option<i64> {
    known.get(token).copied().or_else(|| literal(token))
}

/// An integer literal: decimal, `0x` hex, `0b` binary or leading-zero octal, with `u`/`l` suffixes.
fn literal(token: &str) -> Option<i64> {
    let digits = token.trim_end_matches(['u', 'U', 'l', 'L']);
    let (radix, body) = if let Some(hex) = digits
        .strip_prefix("0x")
        .or_else(|| digits.strip_prefix("0X"))
    {
        (16, hex)
    } else if let Some(bin) = digits
        .strip_prefix("0b")
        .or_else(|| digits.strip_prefix("0B"))
    {
        (2, bin)
    } else if digits.len() > 1 && digits.starts_with('0') {
        (8, &digits[1..])
    } else {
        (10, digits)
    };
    i64::from_str_radix(body, radix).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(items: &[(&str, Option<&str>)]) -> Vec<(String, Option<String>)> {
        items
            .iter()
            .map(|(n, v)| (n.to_string(), v.map(str::to_string)))
            .collect()
    }

    #[test]
    fn implicit_explicit_and_derived_values() {
        let got = values(&list(&[
            ("A", None),
            ("B", Some("5")),
            ("C", None),
            ("D", Some("0x10")),
            ("E", Some("1 << 4")),
            ("F", Some("B + 2")),
            ("G", Some("-1")),
            ("H", None),
            ("I", Some("(010)")),
        ]));
        let values: Vec<Option<i64>> = got.into_iter().map(|(_, v)| v).collect();
        assert_eq!(
            values,
            [
                Some(0),
                Some(5),
                Some(6),
                Some(16),
                Some(16),
                Some(7),
                Some(-1),
                Some(0),
                Some(8)
            ]
        );
    }

    #[test]
    fn unknown_forms_stay_unknown_and_so_do_the_implicit_ones_after() {
        let got = values(&list(&[
            ("A", Some("MAX")),
            ("B", None),
            ("C", Some("1 + 2 * 3")),
            ("D", Some("7")),
        ]));
        let values: Vec<Option<i64>> = got.into_iter().map(|(_, v)| v).collect();
        assert_eq!(values, [None, None, None, Some(7)]);
    }
}
