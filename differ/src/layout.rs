//! Explaining a changed type definition in operator words: which fields or enumerators were
//! added, removed, retyped or reordered.

use tree_sitter::{Node, Parser};

use crate::index::{follow_declarator, text};
use crate::tokens::compact;

/// One member of a struct, union or enum: its name and its declaration as written (compacted).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Member {
    name: String,
    decl: String,
}

/// The members of the first struct/union/enum body in `source`, and the specifier's keyword;
/// `None` when the text holds no such body.
fn members(source: &str) -> Option<(&'static str, Vec<Member>)> {
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
            return Some((keyword, body_members(body, src)));
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
                out.push(Member { name, decl });
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
                    });
                }
                for name in names {
                    out.push(Member {
                        name,
                        decl: decl.clone(),
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
    match (members(old_text), members(new_text)) {
        (Some((keyword, old)), Some((_, new))) => {
            let noun = if keyword == "enum" {
                "enumerator"
            } else {
                "field"
            };
            let changes = member_changes(noun, &old, &new)
                .unwrap_or_else(|| "changes its definition".to_string());
            if keyword == "enum" {
                format!("{what} {changes}: values stored in the running process keep the old numbering, and unpatched code still uses it")
            } else {
                format!("{what} {changes}: {consequence}")
            }
        }
        _ => format!(
            "{what} changes from `{}` to `{}`: {consequence}",
            compact(old_text.trim_end_matches(';').trim()),
            compact(new_text.trim_end_matches(';').trim())
        ),
    }
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
