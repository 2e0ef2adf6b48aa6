//! How the register contract check (`-fipa-ra`: registers unpatched callers keep live across
//! their call of a replaced function) is shown: per replaced function the callers checked, the
//! registers each keeps live, the ones at risk, and what was done about them.

use hotpatch_applier::RegisterContract;

/// Text lines (indented by two spaces) for `contracts`: every one with its callers (`detailed`,
/// for `--dry-run --pid`), or only those that needed a thunk or were forced (after an apply).
pub fn lines(contracts: &[RegisterContract], detailed: bool) -> Vec<String> {
    let mut out = Vec::new();
    for contract in contracts {
        let thunk = !contract.saved.is_empty();
        if !detailed && contract.action == "nothing at risk" {
            continue;
        }
        let what = if thunk {
            format!(
                "a thunk saves {} around the new code",
                contract.saved.join(", ")
            )
        } else {
            contract.action.clone()
        };
        out.push(format!(
            "  register contract of {}: {} caller{} checked; {what}",
            contract.function,
            contract.callers.len(),
            if contract.callers.len() == 1 { "" } else { "s" },
        ));
        if !detailed {
            continue;
        }
        for call in &contract.callers {
            let live = if call.live.is_empty() {
                "nothing".to_string()
            } else {
                call.live.join(", ")
            };
            let risk = if call.at_risk.is_empty() {
                String::new()
            } else {
                format!("; at risk: {}", call.at_risk.join(", "))
            };
            out.push(format!(
                "    {} {} at {:#x}: keeps {live} live{risk}",
                call.caller,
                if call.tail_call {
                    "tail-calls"
                } else {
                    "calls"
                },
                call.site
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use hotpatch_applier::CheckedCall;

    #[test]
    fn shows_callers_and_the_thunk() {
        let contract = RegisterContract {
            function: "tick".into(),
            old_writes: vec!["rax".into()],
            new_writes: vec!["rax".into(), "rcx".into()],
            callers: vec![CheckedCall {
                caller: "advance".into(),
                site: 0x11c5,
                tail_call: false,
                live: vec!["rax".into(), "rcx".into()],
                at_risk: vec!["rcx".into()],
            }],
            action: "thunk".into(),
            saved: vec!["rcx".into()],
        };
        let quiet = RegisterContract {
            function: "other".into(),
            callers: vec![],
            saved: vec![],
            action: "nothing at risk".into(),
            ..contract.clone()
        };
        let all = [contract, quiet];
        assert_eq!(
            lines(&all, true),
            [
                "  register contract of tick: 1 caller checked; a thunk saves rcx around the new code",
                "    advance calls at 0x11c5: keeps rax, rcx live; at risk: rcx",
                "  register contract of other: 0 callers checked; nothing at risk",
            ]
        );
        assert_eq!(lines(&all, false).len(), 1);
    }
}
