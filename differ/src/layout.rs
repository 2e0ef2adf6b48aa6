//! Explaining a changed type definition in operator words: which fields or enumerators were
//! added, removed, retyped or reordered.

use tree_sitter::{Node, Parser};

use crate::enums;
use crate::index::{follow_declarator, text};
use crate::tokens::compact;

/// One member of a struct, union or enum: its name and its declaration as written (compacted).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Member {
    name: String,
    decl: String,
    /// For an enumerator: its value expression as written, when it has one.
    value: Option<String>,
}

/// A struct, union or enum definition taken apart: its keyword, its members, and the tokens
/// outside its body (tag, attributes, typedef names) compacted.
struct Definition {
    keyword: &'static str,
    members: Vec<Member>,
    outside: String,
}

/// The first struct/union/enum definition (with a body) in `source`; `None` when the text holds
/// no such body.
fn definition(source: &str) -> Option<Definition> {
    let mut parser = Parser::new();
    parser.set_language(&tree_sitter_c::LANGUAGE.into()).ok()?;
    let tree = parser.parse(source, None)?;
    let src = source.as_bytes();
    let mut pending = vec![tree.root_node()];
    while let Some(node) = pending.pop() {
        let keyword = match node.kind() {
            "struct_specifier" => Some("struct"),
            "union_specifier" => Some("union"),
            "enum_specifier" => Some("enum"),
            _ => None,
        };
        if let (Some(keyword), Some(body)) = (keyword, node.child_by_field_name("body")) {
            let outside = format!(
                "{} {}",
                source.get(..body.start_byte()).unwrap_or(""),
                source.get(body.end_byte()..).unwrap_or("")
            );
            return Some(Definition {
                keyword,
                members: body_members(body, src),
                outside: compact(&outside),
            });
        }
        let mut cursor = node.walk();
        let mut children: Vec<Node> = node.named_children(&mut cursor).collect();
        children.reverse();
        pending.extend(children);
    }
    None
}

fn body_members(body: Node, src: &[u8]) -> Vec<Member> {
    let mut out = Vec::new();
    let mut cursor = body.walk();
    for child in body.named_children(&mut cursor) {
        let decl = compact(text(child, src).trim_end_matches(';'));
        match child.kind() {
            "enumerator" => {
                let name = child
                    .child_by_field_name("name")
                    .map(|n| text(n, src).to_string())
                    .unwrap_or_else(|| decl.clone());
                let value = child
                    .child_by_field_name("value")
                    .map(|v| text(v, src).to_string());
                out.push(Member { name, decl, value });
            }
            "field_declaration" => {
                let mut c2 = child.walk();
                let names: Vec<String> = child
                    .children_by_field_name("declarator", &mut c2)
                    .filter_map(|d| follow_declarator(d, src).name)
                    .collect();
                if names.is_empty() {
                    out.push(Member {
                        name: decl.clone(),
                        decl: decl.clone(),
                        value: None,
                    });
                }
                for name in names {
                    out.push(Member {
                        name,
                        decl: decl.clone(),
                        value: None,
                    });
                }
            }
            _ => {}
        }
    }
    out
}

/// What changed between two versions of a type definition, e.g. ``gains field `flags` before
/// `fd` ``; `None` when the member lists are the same (attributes, packing, ...).
fn member_changes(noun: &str, old: &[Member], new: &[Member]) -> Option<String> {
    let find = |list: &[Member], name: &str| list.iter().position(|m| m.name == name);
    let mut parts = Vec::new();
    for (i, member) in new.iter().enumerate() {
        match find(old, &member.name) {
            None => {
                let next = new[i + 1..].iter().find(|m| find(old, &m.name).is_some());
                parts.push(match next {
                    Some(next) => format!("gains {noun} `{}` before `{}`", member.name, next.name),
                    None => format!("gains {noun} `{}` at the end", member.name),
                });
            }
            Some(j) if old[j].decl != member.decl => parts.push(format!(
                "{noun} `{}` changes from `{}` to `{}`",
                member.name, old[j].decl, member.decl
            )),
            Some(_) => {}
        }
    }
    for member in old {
        if find(new, &member.name).is_none() {
            parts.push(format!("loses {noun} `{}`", member.name));
        }
    }
    if parts.is_empty() {
        let order = |list: &[Member]| list.iter().map(|m| m.name.clone()).collect::<Vec<_>>();
        if order(old) != order(new) {
            parts.push(format!("reorders its {noun}s"));
        }
    }
    (!parts.is_empty()).then(|| parts.join(", "))
}

/// The reason a changed type definition is refused: `what` names it (`struct conn`,
/// `typedef conn_t`); `old_text` and `new_text` are the two definitions.
pub fn describe(what: &str, old_text: &str, new_text: &str) -> String {
    let consequence = format!(
        "every existing `{}` in the running process has the old layout, and unpatched code still uses it",
        what.trim_start_matches("typedef ")
    );
    match (definition(old_text), definition(new_text)) {
        (Some(old), Some(new)) if old.keyword == "enum" => {
            let mut changes: Vec<String> = member_changes("enumerator", &old.members, &new.members)
                .into_iter()
                .collect();
            changes.extend(renumbered(&old.members, &new.members));
            if changes.is_empty() {
                changes.push("changes its definition".to_string());
            }
            format!(
                "{what} {}: values stored in the running process keep the old numbering, and unpatched code still uses it",
                changes.join(", ")
            )
        }
        (Some(old), Some(new)) => {
            let changes = member_changes("field", &old.members, &new.members)
                .unwrap_or_else(|| "changes its definition".to_string());
            format!("{what} {changes}: {consequence}")
        }
        _ => format!(
            "{what} changes from `{}` to `{}`: {consequence}",
            compact(old_text.trim_end_matches(';').trim()),
            compact(new_text.trim_end_matches(';').trim())
        ),
    }
}

/// Enumerators present on both sides whose value changed, as
/// ``"`BUSY` changes value from 1 to 2"`` (`?` for a value the source does not say plainly).
fn renumbered(old: &[Member], new: &[Member]) -> Vec<String> {
    let (before, after) = (enum_values(old), enum_values(new));
    let show = |v: Option<i64>| v.map_or("?".to_string(), |v| v.to_string());
    after
        .iter()
        .filter_map(|(name, value)| {
            let (_, was) = before.iter().find(|(n, _)| n == name)?;
            (was != value || value.is_none()).then(|| {
                format!(
                    "`{name}` changes value from {} to {}",
                    show(*was),
                    show(*value)
                )
            })
        })
        .collect()
}

fn enum_values(members: &[Member]) -> Vec<(String, Option<i64>)> {
    let list: Vec<(String, Option<String>)> = members
        .iter()
        .map(|m| (m.name.clone(), m.value.clone()))
        .collect();
    enums::values(&list)
}

/// For an enum whose new definition only appends enumerators after the last one — every old
/// enumerator written the same and keeping its value, nothing else around the body changed, every
/// new value known and within `int` (so the enum's size stays) — the note that says so; `None`
/// for any other change (which is refused).
pub fn compatible_enum_growth(what: &str, old_text: &str, new_text: &str) -> Option<String> {
    let (old, new) = (definition(old_text)?, definition(new_text)?);
    if old.keyword != "enum" || old.outside != new.outside || new.members.len() <= old.members.len()
    {
        return None;
    }
    let (kept, added) = new.members.split_at(old.members.len());
    if kept != old.members.as_slice() {
        return None;
    }
    let values = enum_values(&new.members);
    let in_int = |v: &Option<i64>| v.is_some_and(|v| i32::try_from(v).is_ok());
    if !values.iter().all(|(_, v)| in_int(v)) {
        return None;
    }
    let shown: Vec<String> = values[old.members.len()..]
        .iter()
        .zip(added)
        .map(|((name, value), _)| format!("`{name}` = {}", value.unwrap_or_default()))
        .collect();
    Some(format!(
        "{what} gains enumerator {} after the last: every existing value keeps its number, so it is allowed",
        shown.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_added_before_another() {
        let reason = describe(
            "struct conn",
            "struct conn { int fd; char *name; };",
            "struct conn { int flags; int fd; char *name; };",
        );
        assert_eq!(
            reason,
            "struct conn gains field `flags` before `fd`: every existing `struct conn` in the running process has the old layout, and unpatched code still uses it"
        );
    }

    #[test]
    fn retyped_removed_reordered_and_enums() {
        let r = describe(
            "struct s",
            "struct s { int a; int b; };",
            "struct s { long a; };",
        );
        assert!(
            r.contains("field `a` changes from `int a` to `long a`, loses field `b`"),
            "{r}"
        );
        let r = describe(
            "struct s",
            "struct s { int a; int b; };",
            "struct s { int b; int a; };",
        );
        assert!(r.contains("reorders its fields"), "{r}");
        let r = describe("enum e", "enum e { A, B };", "enum e { A, C, B };");
        assert!(r.contains("gains enumerator `C` before `B`"), "{r}");
        let r = describe("typedef id_t", "typedef int id_t;", "typedef long id_t;");
        assert!(
            r.contains("from `typedef int id_t` to `typedef long id_t`"),
            "{r}"
        );
    }
}
