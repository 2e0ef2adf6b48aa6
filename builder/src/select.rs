//! Turning the externalizer's candidate functions into the confirmed patch set: a candidate whose
//! compiled code did not change is left alone; one that changed keeps its place, with the reason
//! the objects give; a `static` function the old object does not define (inlined everywhere) is
//! patched through its callers only.

use hotpatch_externalizer::{Action, PatchFunction, PatchUnit};

use crate::confirm::Confirmation;

/// The functions of one unit the patch replaces or adds, and notes for the report.
#[derive(Debug, Default)]
pub struct Confirmed {
    /// The functions, with action and reason as the manifest will say.
    pub functions: Vec<PatchFunction>,
    /// Candidates left alone because their code did not change, as `file: name`.
    pub unchanged: Vec<String>,
    /// Notes for the operator: `(file, text)`.
    pub warnings: Vec<(String, String)>,
}

/// Applies `confirmation` (when there is one) to the unit's candidate functions.
pub fn confirmed_functions(unit: &PatchUnit, confirmation: Option<&Confirmation>) -> Confirmed {
    let Some(confirmation) = confirmation else {
        return Confirmed {
            functions: unit.functions.clone(),
            ..Confirmed::default()
        };
    };
    let mut out = Confirmed::default();
    for function in &unit.functions {
        let mut function = function.clone();
        if function.action == Action::Add {
            out.functions.push(function);
            continue;
        }
        let in_old = confirmation.old_functions.contains(&function.name);
        match confirmation.patch.get(&function.name) {
            Some(why) => {
                function.reason = reason(&function.reason, why);
                if !in_old && function.is_static {
                    function.action = Action::InlinedOnly;
                }
                out.functions.push(function);
            }
            None if !in_old && function.is_static => {
                // No copy of its own in the binary: its callers carry the change.
                function.action = Action::InlinedOnly;
                out.functions.push(function);
            }
            None => out
                .unchanged
                .push(format!("{}: {}", unit.file, function.name)),
        }
    }
    for (name, why) in &confirmation.patch {
        if !unit.functions.iter().any(|f| &f.name == name) {
            out.warnings.push((
                unit.file.clone(),
                format!("the compiled code of `{name}` changed ({why}) but the source change does not reach it; it is not patched"),
            ));
        }
    }
    if !out
        .functions
        .iter()
        .any(|f| f.action != Action::InlinedOnly)
        && !unit.functions.is_empty()
    {
        out.warnings.push((
            unit.file.clone(),
            "no function's compiled code changed; patching the source-level change as it is"
                .to_string(),
        ));
        out.functions = unit.functions.clone();
        out.unchanged.clear();
    }
    out
}

/// The reason the report gives: the source's, sharpened by what the objects showed.
fn reason(source: &str, object: &str) -> String {
    if source == "changed" {
        return "changed".to_string();
    }
    if object == "its code changed" {
        if let Some(callee) = source.strip_prefix("may inline ") {
            return format!("inlines {callee} (its code changed)");
        }
        return format!("{source} (its code changed)");
    }
    object.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn function(name: &str, is_static: bool, reason: &str) -> PatchFunction {
        PatchFunction {
            name: name.into(),
            is_static,
            action: Action::Replace,
            reason: reason.into(),
            line: 1,
        }
    }

    fn unit(functions: Vec<PatchFunction>) -> PatchUnit {
        PatchUnit {
            file: "lib.c".into(),
            source: String::new(),
            functions,
            bindings: vec![],
            copied: vec![],
            new_data: vec![],
            static_locals: vec![],
        }
    }

    #[test]
    fn unchanged_callers_are_dropped_and_inlined_statics_go_through_callers() {
        let unit = unit(vec![
            function("scale", true, "changed"),
            function("value", false, "may inline `scale`"),
            function("other", false, "may inline `scale`"),
        ]);
        let mut c = Confirmation::default();
        c.patch.insert("value".into(), "its code changed".into());
        c.patch.insert("ghost".into(), "its code changed".into());
        c.old_functions.insert("value".into());
        c.old_functions.insert("other".into());
        let out = confirmed_functions(&unit, Some(&c));
        let got: Vec<_> = out
            .functions
            .iter()
            .map(|f| (f.name.as_str(), f.action, f.reason.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("scale", Action::InlinedOnly, "changed"),
                (
                    "value",
                    Action::Replace,
                    "inlines `scale` (its code changed)"
                )
            ]
        );
        assert_eq!(out.unchanged, ["lib.c: other"]);
        assert!(out.warnings[0].1.contains("`ghost`"));
    }

    #[test]
    fn nothing_confirmed_keeps_the_source_plan() {
        let unit = unit(vec![function("f", false, "changed")]);
        let mut c = Confirmation::default();
        c.old_functions.insert("f".into());
        let out = confirmed_functions(&unit, Some(&c));
        assert_eq!(out.functions.len(), 1);
        assert_eq!(out.warnings.len(), 1);
    }
}
