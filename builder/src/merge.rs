//! Merging the relocatable objects of several patch units into the one patch object the applier
//! loads, and embedding the manifest section.
//!
//! Each unit's undefined references to `static` symbols of its own source file are renamed to a
//! name unique to that file (two files may each reference their own `static int count`), and the
//! renames become the manifest's bindings. A global defined by one unit and used by another is one
//! symbol in the result.

use std::collections::{HashMap, HashSet};

use hotpatch_applier::artifact::{Binding, SymbolRef, MANIFEST_SECTION};
use hotpatch_externalizer::StaticLocalBinding;
use object::elf::{SHF_ALLOC, SHT_NOBITS, SHT_NOTE};
use object::read::{Object as _, ObjectSection as _, ObjectSymbol as _};
use object::write::{self, SymbolId, SymbolSection};
use object::{
    Architecture, BinaryFormat, Endianness, RelocationTarget, SectionFlags, SectionIndex,
    SectionKind, SymbolFlags, SymbolIndex, SymbolKind, SymbolScope,
};

use crate::BuildError;

/// The name a unit's undefined reference to `name`, a `static` of `file`, gets in the merged
/// object. Readable in `nm` output and unique per (file, name).
pub fn file_local_symbol(file: &str, name: &str) -> String {
    format!("hp.local:{file}:{name}")
}

/// The name a unit's reference to the static local `name` of `function` (in `file`) gets in the
/// merged object.
pub fn static_local_symbol(file: &str, function: &str, name: &str) -> String {
    format!("hp.static:{file}:{function}:{name}")
}

/// Accumulates units into one relocatable ELF object.
pub struct Merger {
    object: write::Object<'static>,
    /// Global symbols by name, defined or not yet.
    globals: HashMap<Vec<u8>, SymbolId>,
    /// Names of defined local functions already taken by an earlier unit.
    local_functions: HashSet<Vec<u8>>,
    bindings: Vec<Binding>,
}

/// What merging one unit tells the manifest: the final names of the functions it defines.
#[derive(Debug, Default)]
pub struct UnitSymbols {
    /// Source name → symbol name in the merged object (differs only for clashing `static`s).
    pub functions: HashMap<String, String>,
}

impl Default for Merger {
    fn default() -> Self {
        Merger {
            object: write::Object::new(BinaryFormat::Elf, Architecture::X86_64, Endianness::Little),
            globals: HashMap::new(),
            local_functions: HashSet::new(),
            bindings: Vec::new(),
        }
    }
}

impl Merger {
    /// Adds the object compiled from `file`; `local_bindings` are the names that mean a `static`
    /// symbol of `file` in the running binary, `static_locals` the labels of static locals.
    pub fn add_unit(
        &mut self,
        unit_index: usize,
        file: &str,
        bytes: &[u8],
        local_bindings: &HashSet<&str>,
        static_locals: &[StaticLocalBinding],
    ) -> Result<UnitSymbols, BuildError> {
        let bad =
            |detail: String| BuildError::Object(format!("object compiled from {file}: {detail}"));
        let input = object::File::parse(bytes).map_err(|e| bad(e.to_string()))?;
        let sections = self.copy_sections(&input, &bad)?;
        let mut symbols: HashMap<SymbolIndex, SymbolId> = HashMap::new();
        let mut result = UnitSymbols::default();
        for symbol in input.symbols() {
            let name = symbol
                .name_bytes()
                .map_err(|e| bad(e.to_string()))?
                .to_vec();
            let id = match symbol.kind() {
                SymbolKind::File => continue,
                SymbolKind::Section => {
                    match symbol.section_index().and_then(|i| sections.get(&i)) {
                        Some(&section) => self.object.section_symbol(section),
                        None => continue,
                    }
                }
                _ if symbol.is_undefined() => {
                    self.undefined(file, name, local_bindings, static_locals)
                }
                _ => {
                    if symbol.is_common() {
                        return Err(bad(format!(
                            "`{}` is a common symbol; build with -fno-common",
                            String::from_utf8_lossy(&name)
                        )));
                    }
                    let Some(&section) = symbol.section_index().and_then(|i| sections.get(&i))
                    else {
                        continue;
                    };
                    let source_name = String::from_utf8_lossy(&name).into_owned();
                    let final_name = if symbol.is_local() && symbol.kind() == SymbolKind::Text {
                        let mut candidate = name.clone();
                        if self.local_functions.contains(&candidate) {
                            candidate = format!("{source_name}.hp{unit_index}").into_bytes();
                        }
                        self.local_functions.insert(candidate.clone());
                        candidate
                    } else {
                        name
                    };
                    if symbol.kind() == SymbolKind::Text {
                        result.functions.insert(
                            source_name,
                            String::from_utf8_lossy(&final_name).into_owned(),
                        );
                    }
                    self.defined(final_name, &symbol, section)
                }
            };
            symbols.insert(symbol.index(), id);
        }
        self.copy_relocations(&input, &sections, &symbols, &bad)?;
        Ok(result)
    }

    fn copy_sections(
        &mut self,
        input: &object::File<'_>,
        bad: &dyn Fn(String) -> BuildError,
    ) -> Result<HashMap<SectionIndex, write::SectionId>, BuildError> {
        let mut map = HashMap::new();
        for section in input.sections() {
            let SectionFlags::Elf { sh_flags, sh_type } = section.flags() else {
                continue;
            };
            if sh_flags.0 & SHF_ALLOC.0 == 0 || sh_type == SHT_NOTE {
                continue;
            }
            let name = section
                .name_bytes()
                .map_err(|e| bad(e.to_string()))?
                .to_vec();
            let kind = section.kind();
            let id = self.object.add_section(Vec::new(), name, kind);
            self.object.section_mut(id).flags = SectionFlags::Elf { sh_flags, sh_type };
            if sh_type == SHT_NOBITS || kind == SectionKind::UninitializedData {
                self.object
                    .append_section_bss(id, section.size(), section.align().max(1));
            } else {
                let data = section.data().map_err(|e| bad(e.to_string()))?;
                self.object
                    .set_section_data(id, data.to_vec(), section.align().max(1));
            }
            map.insert(section.index(), id);
        }
        Ok(map)
    }

    fn undefined(
        &mut self,
        file: &str,
        name: Vec<u8>,
        local_bindings: &HashSet<&str>,
        static_locals: &[StaticLocalBinding],
    ) -> SymbolId {
        let source_name = String::from_utf8_lossy(&name).into_owned();
        let static_local = static_locals.iter().find(|s| s.symbol == source_name);
        let name = if let Some(local) = static_local {
            let renamed = static_local_symbol(file, &local.function, &local.name);
            if !self.globals.contains_key(renamed.as_bytes()) {
                self.bindings.push(Binding {
                    symbol: renamed.clone(),
                    target: SymbolRef::StaticLocal {
                        function: local.function.clone(),
                        name: local.name.clone(),
                        file: file.to_string(),
                    },
                });
            }
            renamed.into_bytes()
        } else if local_bindings.contains(source_name.as_str()) {
            let renamed = file_local_symbol(file, &source_name);
            if !self.globals.contains_key(renamed.as_bytes()) {
                self.bindings.push(Binding {
                    symbol: renamed.clone(),
                    target: SymbolRef::FileLocal {
                        name: source_name,
                        file: file.to_string(),
                    },
                });
            }
            renamed.into_bytes()
        } else {
            name
        };
        if let Some(&id) = self.globals.get(&name) {
            return id;
        }
        let id = self.object.add_symbol(write::Symbol {
            name: name.clone(),
            value: 0,
            size: 0,
            kind: SymbolKind::Unknown,
            scope: SymbolScope::Dynamic,
            weak: false,
            section: SymbolSection::Undefined,
            flags: SymbolFlags::None,
        });
        self.globals.insert(name, id);
        id
    }

    fn defined(
        &mut self,
        name: Vec<u8>,
        symbol: &object::Symbol<'_, '_>,
        section: write::SectionId,
    ) -> SymbolId {
        let definition = write::Symbol {
            name: name.clone(),
            value: symbol.address(),
            size: symbol.size(),
            // ELF NOTYPE labels such as `.LC0` read back as Unknown, which the writer only
            // accepts for undefined symbols; Label writes the same NOTYPE.
            kind: match symbol.kind() {
                SymbolKind::Unknown => SymbolKind::Label,
                kind => kind,
            },
            scope: if symbol.is_local() {
                SymbolScope::Compilation
            } else {
                SymbolScope::Dynamic
            },
            weak: symbol.is_weak(),
            section: SymbolSection::Section(section),
            flags: SymbolFlags::None,
        };
        if symbol.is_local() {
            return self.object.add_symbol(definition);
        }
        if let Some(&id) = self.globals.get(&name) {
            // Another unit referenced it before this one defined it: complete that symbol.
            *self.object.symbol_mut(id) = definition;
            return id;
        }
        let id = self.object.add_symbol(definition);
        self.globals.insert(name, id);
        id
    }

    fn copy_relocations(
        &mut self,
        input: &object::File<'_>,
        sections: &HashMap<SectionIndex, write::SectionId>,
        symbols: &HashMap<SymbolIndex, SymbolId>,
        bad: &dyn Fn(String) -> BuildError,
    ) -> Result<(), BuildError> {
        for section in input.sections() {
            let Some(&target_section) = sections.get(&section.index()) else {
                continue;
            };
            for (offset, relocation) in section.relocations() {
                let symbol = match relocation.target() {
                    RelocationTarget::Symbol(index) => symbols.get(&index).copied(),
                    RelocationTarget::Section(index) => {
                        sections.get(&index).map(|&s| self.object.section_symbol(s))
                    }
                    _ => None,
                }
                .ok_or_else(|| {
                    bad(format!(
                        "relocation at {offset:#x} in a loaded section refers to a dropped symbol"
                    ))
                })?;
                self.object
                    .add_relocation(
                        target_section,
                        write::Relocation {
                            offset,
                            symbol,
                            addend: relocation.addend(),
                            flags: relocation.flags(),
                        },
                    )
                    .map_err(|e| bad(e.to_string()))?;
            }
        }
        Ok(())
    }

    /// The bindings created so far (file-local references renamed by [`Merger::add_unit`]).
    pub fn bindings(&self) -> &[Binding] {
        &self.bindings
    }

    /// Embeds `manifest_json` in [`MANIFEST_SECTION`] and writes the merged object.
    pub fn finish(mut self, manifest_json: &str) -> Result<Vec<u8>, BuildError> {
        let id = self.object.add_section(
            Vec::new(),
            MANIFEST_SECTION.as_bytes().to_vec(),
            SectionKind::Other,
        );
        self.object
            .set_section_data(id, manifest_json.as_bytes().to_vec(), 1);
        self.object
            .write()
            .map_err(|e| BuildError::Object(format!("writing the patch object: {e}")))
    }
}
