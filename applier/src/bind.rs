//! Binding a global name of the patch to the definition the original code reaches, by the
//! dynamic linker's rules, and saying why. The code that refers to the name replaces code of one
//! module (the *requester*), whose references `ld.so` bound when it loaded it; so, in order:
//!
//! 1. the requester's own definition when `ld.so` binds the requester's references to it: a
//!    hidden symbol (local after linking), a protected one, any one of a library linked with
//!    `-Bsymbolic`, and for the executable its own globals, exported or not (its hidden and
//!    LTO-localised ones are looked for last, after rule 3: its unnamed symbol groups also hold
//!    LTO's statics);
//! 2. the requester's GOT slot for the name, read from the process, when `ld.so` has filled it
//!    (not still pointing into the PLT): the address the original code itself uses — interposers,
//!    versions, copy relocations and IFUNCs included; then the executable's slot;
//! 3. the first definition in the lookup scope, in the link map's order: the global scope
//!    (executable, `LD_PRELOAD` libraries, `DT_NEEDED` breadth-first), then for a `dlopen`ed
//!    requester its local scope (itself, its `DT_NEEDED` breadth-first), with the
//!    symbol version asked for: `name@VER` in the patch object, else the default (`@@`) version,
//!    the one the patch was compiled against (a GOT slot of rule 2 counts only when it was bound
//!    for that same version: a module linked against `memcpy@GLIBC_2.2.5` does not decide for a
//!    patch compiled against `memcpy@@GLIBC_2.14`). A library variable the executable holds a
//!    copy of (`R_X86_64_COPY`) is found in the executable first, so the copy is what is bound.
//!
//! The requester is known per reference (each replaced function has its own section); see
//! `plan::requesters_of`.

use crate::error::ApplyError;
use crate::ptrace::read_word;
use crate::resolve::{runtime_address, TlsModel};
use crate::target::{Found, Target};

/// A global name bound in the target.
#[derive(Debug, Clone)]
pub(crate) struct Bound {
    /// The address code of the patch uses.
    pub(crate) address: u64,
    /// The module holding it, when known.
    pub(crate) module: Option<usize>,
    /// Which rule decided, in words (shown by `--dry-run --pid`).
    pub(crate) rule: String,
}

/// Splits `name@VER` / `name@@VER` (a version the patch object asks for) into name and version.
pub(crate) fn split_version(symbol: &str) -> (&str, Option<&str>) {
    match symbol.split_once('@') {
        Some((name, version)) => {
            let version = version.strip_prefix('@').unwrap_or(version);
            (name, Some(version).filter(|v| !v.is_empty()))
        }
        None => (symbol, None),
    }
}

/// Binds the global `symbol` (possibly `name@VER`) as the code of module `requester` is bound;
/// a thread-local one as the patch reaches it (`tls`). `Ok(None)`: nothing defines it.
pub(crate) fn bind_global(
    target: &Target,
    symbol: &str,
    requester: usize,
    tls: TlsModel,
) -> Result<Option<Bound>, ApplyError> {
    let (name, asked) = split_version(symbol);
    let Some(module_path) = target.modules.get(requester).map(|m| m.path.as_str()) else {
        return Ok(None);
    };
    let version_note = asked.map_or_else(String::new, |v| {
        format!(", version {v} (the patch asks for it)")
    });
    if let Some(bound) = own_definition(target, name, asked, requester, tls)? {
        return Ok(Some(bound));
    }
    // The executable's `.symtab`-only globals are its own business: other modules' code never
    // reaches them (that was rule 1 for the executable itself).
    let order = target.scope.for_requester(requester, &target.modules);
    let found = target
        .lookup_in_order(&order, name, asked, false, true)
        .or_else(|| {
            let own = asked.is_none() && requester == target.exe;
            own.then(|| target.lto_localized(name, false))?
        });
    // A GOT slot holds what ld.so bound for the version the module was linked against: it is the
    // answer when that is the version wanted (a plain name wants the default one).
    let wanted = asked.or_else(|| found.as_ref()?.symbol.version.as_deref());
    for slots_of in [requester, target.exe] {
        let linked = target.modules[slots_of].symbols.needed_versions.get(name);
        let same_version = match (linked, wanted) {
            (Some(linked), Some(wanted)) => linked == wanted,
            _ => asked.is_none(),
        };
        if same_version {
            if let Some(bound) = got_binding(target, name, slots_of) {
                return Ok(Some(bound));
            }
        }
    }
    let Some(found) = found else {
        return Ok(None);
    };
    let (address, note) = runtime_address(target, name, &found, tls)?;
    let path = &target.modules[found.module].path;
    let place = match order.iter().position(|&m| m == found.module) {
        Some(position) if target.scope.from_link_map && position < target.scope.startup => {
            format!("position {} of the link map", position + 1)
        }
        Some(_) if target.scope.from_link_map => format!(
            "after the global scope, in the local scope of {}, which dlopen loaded",
            module_path
        ),
        Some(position) => format!(
            "position {} of the order rebuilt from LD_PRELOAD and DT_NEEDED (no link map)",
            position + 1
        ),
        None => "(not in the lookup order)".to_string(),
    };
    let copy = copy_note(target, name, found.module);
    Ok(Some(Bound {
        address,
        module: Some(found.module),
        rule: format!(
            "first definition in the global scope: {path}, {place}{version_note}{copy}{note}"
        ),
    }))
}

/// Says so when module `index` is the executable holding a copy of a library's variable `name`.
fn copy_note(target: &Target, name: &str, index: usize) -> String {
    let copied = target
        .modules
        .get(index)
        .is_some_and(|m| m.is_exe && m.symbols.copy_relocations.iter().any(|c| c == name));
    if copied {
        "; the executable's copy of the library variable (copy relocation), which all code uses"
            .to_string()
    } else {
        String::new()
    }
}

/// Rule 1: the requester's own hidden, protected or `-Bsymbolic` definition.
fn own_definition(
    target: &Target,
    name: &str,
    version: Option<&str>,
    requester: usize,
    tls: TlsModel,
) -> Result<Option<Bound>, ApplyError> {
    let module = &target.modules[requester];
    let path = &module.path;
    let (found, rule) = match target.definition_in(requester, name, version, false, false) {
        Some(found) if module.is_exe => {
            let copy = copy_note(target, name, requester);
            (
                found,
                format!("defined by the executable {path} itself{copy}"),
            )
        }
        Some(found) if found.symbol.visibility == object::elf::STV_PROTECTED => (
            found,
            format!("protected in {path}: its own references are not interposed"),
        ),
        Some(found) if module.symbols.symbolic => (
            found,
            format!("{path} is linked -Bsymbolic: its own definition comes first"),
        ),
        // Exported and interposable: the lookup scope decides.
        Some(_) => return Ok(None),
        // The executable's hidden (and LTO-localised) globals come last, after the scope, as
        // its unnamed symbol groups also hold LTO's statics.
        None if module.is_exe => return Ok(None),
        None => match hidden_definition(target, name, requester) {
            Some(found) => (
                found,
                format!("hidden in {path}: its own definition, never interposed"),
            ),
            None => return Ok(None),
        },
    };
    let (address, note) = runtime_address(target, name, &found, tls)?;
    Ok(Some(Bound {
        address,
        module: Some(requester),
        rule: format!("{rule}{note}"),
    }))
}

/// The one hidden definition of `name` in module `index`: `ld` turns a hidden global into a
/// local symbol, listed in the linker's own unnamed symbol group (after an `STT_FILE` with no
/// name), usually without its visibility.
fn hidden_definition(target: &Target, name: &str, index: usize) -> Option<Found> {
    let module = &target.modules[index];
    let mut unique: Vec<&crate::symbols::ModSymbol> = Vec::new();
    for group in &module.symbols.files {
        for symbol in group.locals.get(name).into_iter().flatten() {
            let hidden = group.file.is_empty()
                || matches!(
                    symbol.visibility,
                    object::elf::STV_HIDDEN | object::elf::STV_INTERNAL
                );
            if hidden && !unique.iter().any(|u| u.value == symbol.value) {
                unique.push(symbol);
            }
        }
    }
    match unique.as_slice() {
        [symbol] => Some(Found {
            module: index,
            symbol: (*symbol).clone(),
            address: module.address_of(symbol),
            file: None,
        }),
        _ => None,
    }
}

/// Rule 2: the value `ld.so` wrote into module `index`'s GOT slot for `name`, if it did.
fn got_binding(target: &Target, name: &str, index: usize) -> Option<Bound> {
    let module = &target.modules[index];
    let slots = module.symbols.got_slots.get(name)?;
    slots.iter().find_map(|&slot| {
        let value = filled_slot(target, index, module.address_of_value(slot))?;
        let owner = target.module_at(value);
        let copy = owner.map_or_else(String::new, |o| copy_note(target, name, o));
        Some(Bound {
            address: value,
            module: owner,
            rule: format!("the GOT slot of {} as ld.so filled it{copy}", module.path),
        })
    })
}

/// The value of the GOT slot at `address` of module `index`, when the dynamic linker has filled
/// it: not zero and not pointing into the module's PLT (a lazy binding not made yet).
pub(crate) fn filled_slot(target: &Target, index: usize, address: u64) -> Option<u64> {
    let module = target.modules.get(index)?;
    let value = read_word(target.pid(), address)?;
    let in_plt = module.symbols.plt_ranges.iter().any(|&(lo, hi)| {
        let (lo, hi) = (module.address_of_value(lo), module.address_of_value(hi));
        lo <= value && value < hi
    });
    (value != 0 && !in_plt).then_some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_split_off() {
        assert_eq!(split_version("memcpy"), ("memcpy", None));
        assert_eq!(
            split_version("memcpy@GLIBC_2.2.5"),
            ("memcpy", Some("GLIBC_2.2.5"))
        );
        assert_eq!(split_version("vget@@VER_2"), ("vget", Some("VER_2")));
        assert_eq!(split_version("odd@"), ("odd", None));
    }
}
