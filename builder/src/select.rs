//! Turning the externalizer's candidate functions into the confirmed patch set: a candidate whose
//! compiled code did not change is left alone; one that changed keeps its place, with the reason
//! the objects give; a `static` function the old object does not define (inlined everywhere) is
//! patched through its callers only. An always-active candidate (`main`, an endless loop) whose
//! code changed, or cannot be compared, is refused: its running call never returns.

use hotpatch_differ::{Refusal, RefusalKind};
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
    /// Always-active functions the change reaches: left out of `functions`, and refused unless
    /// the operator forces them (then they keep their old code).
    pub refusals: Vec<Refusal>,
}

/// Applies `confirmation` (when there is one) to the unit's candidate functions.
pub fn confirmed_functions(unit: &PatchUnit, confirmation: Option<&Confirmation>) -> Confirmed {
    let Some(confirmation) = confirmation else {
        let mut out = Confirmed::default();
        for function in &unit.functions {
            if function.always_active {
                let why = format!(
                    "{}; its compiled code cannot be compared with the running one, as under LTO",
                    function.reason
                );
                out.refusals.push(always_active(unit, function, &why));
            } else {
                out.functions.push(function.clone());
            }
        }
        return out;
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
            Some(why) if function.always_active => {
                let why = reason(&function.reason, why);
                out.refusals.push(always_active(unit, &function, &why));
            }
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
        out.functions = unit
            .functions
            .iter()
            .filter(|f| !f.always_active)
            .cloned()
            .collect();
        out.unchanged.clear();
    }
    out
}

/// The refusal of an always-active function the change reaches; `why` says why it would be
/// replaced, as the objects showed it.
fn always_active(unit: &PatchUnit, function: &PatchFunction, why: &str) -> Refusal {
    let name = &function.name;
    // The unit's first line is its `#line` directive: source line N is its line N + 1.
    let snippet = unit
        .source
        .lines()
        .nth(function.line as usize)
        .map(|l| format!("{} | {l}", function.line))
        .unwrap_or_default();
    Refusal {
        item: name.clone(),
        kind: RefusalKind::AlwaysActive,
        file: unit.file.clone(),
        line: function.line,
        reason: format!(
            "`{name}` would have to be replaced ({why}) but it is always active: its running call never returns, so new code would never run there. Forced, the patch leaves `{name}` alone and it keeps its old code"
        ),
        snippet,
    }
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
            always_active: name == "main",
        }
    }

    fn unit(functions: Vec<PatchFunction>) -> PatchUnit {
        PatchUnit {
            file: "lib.c".into(),
            source: String::new(),
            preprocessed: false,
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
    fn main_is_refused_only_when_its_code_changed() {
        let unit = unit(vec![
            function("step", true, "changed"),
            function("main", false, "may inline `step`"),
        ]);
        let mut c = Confirmation::default();
        c.patch.insert("step".into(), "its code changed".into());
        c.old_functions
            .extend(["step".to_string(), "main".to_string()]);
        let out = confirmed_functions(&unit, Some(&c));
        assert!(out.refusals.is_empty(), "{:?}", out.refusals);
        assert_eq!(out.unchanged, ["lib.c: main"]);
        c.patch.insert("main".into(), "its code changed".into());
        let out = confirmed_functions(&unit, Some(&c));
        let names: Vec<&str> = out.functions.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(names, ["step"]);
        assert_eq!(out.refusals.len(), 1);
        let r = &out.refusals[0];
        assert_eq!(
            (r.item.as_str(), r.kind),
            ("main", RefusalKind::AlwaysActive)
        );
        assert!(
            r.reason.starts_with("`main` would have to be replaced (inlines `step` (its code changed)) but it is always active"),
            "{}",
            r.reason
        );
        // Nothing to compare (LTO): refused as a prediction.
        let out = confirmed_functions(&unit, None);
        assert_eq!(out.refusals.len(), 1);
        assert!(out.refusals[0].reason.contains("cannot be compared"));
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
