//! The layouts of the named types a compilation unit's DWARF describes (size, members with
//! their offsets and types, enumerator values; typedefs by what they name), and the first
//! difference between the layouts a patch was compiled with and those of the running binary.
//!
//! Where bytes cannot be compared (link-time optimisation) this is the proof that the patch sees
//! the same data as the code it joins: a `-D` the patch's flags miss that changes a struct, a
//! different `-m` switch, packing. For other builds it is a second proof beside the pre-image.

use std::collections::HashMap;

use gimli::{AttributeValue, UnitOffset};
use serde::{Deserialize, Serialize};

use crate::debuginfo::{unit_path, with_dwarf, Slice};
use crate::symbols::file_matches;

/// One named type of a compilation unit, as its DWARF lays it out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TypeLayout {
    /// `struct conn`, `union value`, `enum state`, `typedef conn_t`; an anonymous enum is named
    /// by its first enumerator (`enum { READY, ... }`).
    pub name: String,
    /// Its size in bytes (none recorded: a typedef, an incomplete type).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// For a typedef: the type it names, described (see [`TypeLayout::members`] for how).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aliases: Option<String>,
    /// Members of a struct or union, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<MemberLayout>,
    /// Enumerators of an enum, in order, with their values.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub enumerators: Vec<(String, i64)>,
}

/// One member of a struct or union.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberLayout {
    /// Its name (empty for an anonymous struct or union member).
    pub name: String,
    /// Its offset from the start of the type, in bits (bytes × 8 for a whole-byte member).
    pub offset_bits: u64,
    /// Its width in bits, for a bit field.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bit_size: Option<u64>,
    /// Its type: `int (4 bytes)`, `struct conn *`, `char[16]`, an anonymous struct spelled out.
    pub ty: String,
}

/// How deep anonymous types are spelled out inside a description (a bound against cycles in
/// bad input).
const MAX_DEPTH: usize = 8;

/// The layouts of the named file-scope types of every compilation unit of the ELF file `elf`
/// whose source matches `file` (every unit when `file` is `None`: a patch object has one), one
/// list per unit. `None` without debug information.
pub fn unit_layouts(elf: &[u8], file: Option<&str>) -> Option<Vec<Vec<TypeLayout>>> {
    with_dwarf(elf, |dwarf| {
        let mut out = Vec::new();
        let mut headers = dwarf.units();
        while let Ok(Some(header)) = headers.next() {
            let Ok(unit) = dwarf.unit(header) else {
                continue;
            };
            let wanted = match file {
                None => true,
                Some(file) => unit_path(&unit).is_some_and(|p| file_matches(&p, file)),
            };
            if wanted {
                if let Ok(dies) = Dies::read(dwarf, &unit) {
                    out.push(dies.layouts());
                }
            }
        }
        out
    })
}

/// The first difference between a type the patch uses (`patch`) and the same-named type of the
/// running binary (`binary`), in words; `None` when they agree.
pub fn difference(patch: &TypeLayout, binary: &TypeLayout) -> Option<String> {
    let name = &patch.name;
    if patch.aliases != binary.aliases {
        return Some(format!(
            "`{name}` names `{}` in the patch, `{}` in the running binary",
            patch.aliases.as_deref().unwrap_or("?"),
            binary.aliases.as_deref().unwrap_or("?")
        ));
    }
    for member in &patch.members {
        let Some(other) = binary.members.iter().find(|m| m.name == member.name) else {
            return Some(format!(
                "`{name}` has a member `{}` in the patch that the running binary's lacks",
                member.name
            ));
        };
        if member.offset_bits != other.offset_bits || member.bit_size != other.bit_size {
            return Some(format!(
                "`{name}`: member `{}` at {} in the patch, {} in the running binary",
                member.name,
                place(member),
                place(other)
            ));
        }
        if member.ty != other.ty {
            return Some(format!(
                "`{name}`: member `{}` is `{}` in the patch, `{}` in the running binary",
                member.name, member.ty, other.ty
            ));
        }
    }
    if let Some(extra) = binary
        .members
        .iter()
        .find(|m| !patch.members.iter().any(|p| p.name == m.name))
    {
        return Some(format!(
            "`{name}` has a member `{}` in the running binary that the patch's lacks",
            extra.name
        ));
    }
    // An enumerator only the patch has is a new value (the differ allows appending one after
    // the last); one whose value moved, or that the patch lacks, is a different enum.
    for (enumerator, value) in &patch.enumerators {
        if let Some((_, other)) = binary
            .enumerators
            .iter()
            .find(|(e, o)| e == enumerator && o != value)
        {
            return Some(format!(
                "`{name}`: `{enumerator}` is {value} in the patch, {other} in the running binary"
            ));
        }
    }
    if let Some((extra, value)) = binary
        .enumerators
        .iter()
        .find(|(e, _)| !patch.enumerators.iter().any(|(p, _)| p == e))
    {
        return Some(format!(
            "`{name}`: `{extra}` is {value} in the running binary and not in the patch"
        ));
    }
    // An appended enumerator may widen the enum's type; its held values keep their numbers.
    let grown = patch.enumerators.len() > binary.enumerators.len();
    if patch.size != binary.size && !grown {
        let size =
            |s: Option<u64>| s.map_or("of unknown size".to_string(), |s| format!("{s} bytes"));
        return Some(format!(
            "`{name}` is {} in the patch, {} in the running binary",
            size(patch.size),
            size(binary.size)
        ));
    }
    None
}

/// Where a member is, in words: `offset 24`, or `bit 3 of offset 8 (2 bits)` for a bit field.
fn place(member: &MemberLayout) -> String {
    let (bytes, bits) = (member.offset_bits / 8, member.offset_bits % 8);
    match member.bit_size {
        Some(width) => format!("bit {bits} of offset {bytes} ({width} bits)"),
        None if bits == 0 => format!("offset {bytes}"),
        None => format!("bit offset {}", member.offset_bits),
    }
}

/// What one debugging information entry of interest says.
#[derive(Debug)]
struct Die {
    tag: gimli::DwTag,
    name: Option<String>,
    size: Option<u64>,
    ty: Option<UnitOffset>,
    declaration: bool,
    /// A member's offset in bits.
    offset_bits: u64,
    bit_size: Option<u64>,
    /// An enumerator's value.
    value: Option<i64>,
    /// A subrange's element count.
    count: Option<u64>,
    children: Vec<UnitOffset>,
}

/// The type entries of one unit (outside function bodies), by offset, and its file-scope ones.
struct Dies {
    by_offset: HashMap<UnitOffset, Die>,
    top: Vec<UnitOffset>,
}

impl Dies {
    /// One pass over the unit's entries.
    fn read(dwarf: &gimli::Dwarf<Slice<'_>>, unit: &gimli::Unit<Slice<'_>>) -> gimli::Result<Dies> {
        let mut dies = Dies {
            by_offset: HashMap::new(),
            top: Vec::new(),
        };
        // Entries enclosing the current one: (depth, offset; None inside a function body).
        let mut parents: Vec<(isize, Option<UnitOffset>)> = Vec::new();
        let mut entries = unit.entries();
        while let Some(entry) = entries.next_dfs()? {
            let depth = entry.depth();
            while parents.last().is_some_and(|&(d, _)| d >= depth) {
                parents.pop();
            }
            let inside_function = parents.iter().any(|(_, p)| p.is_none());
            let tag = entry.tag();
            if inside_function || tag == gimli::DW_TAG_subprogram {
                parents.push((depth, None));
                continue;
            }
            let offset = entry.offset();
            let die = read_die(dwarf, unit, entry);
            if let Some(parent) = parents.last().and_then(|(_, p)| *p) {
                if let Some(parent) = dies.by_offset.get_mut(&parent) {
                    parent.children.push(offset);
                }
            }
            if depth == 1 {
                dies.top.push(offset);
            }
            dies.by_offset.insert(offset, die);
            parents.push((depth, Some(offset)));
        }
        Ok(dies)
    }

    /// The layouts of the unit's named file-scope types (complete ones: declarations say
    /// nothing of a layout).
    fn layouts(&self) -> Vec<TypeLayout> {
        let mut out = Vec::new();
        for offset in &self.top {
            let Some(die) = self.by_offset.get(offset) else {
                continue;
            };
            if die.declaration {
                continue;
            }
            let keyword = match die.tag {
                gimli::DW_TAG_structure_type => "struct",
                gimli::DW_TAG_union_type => "union",
                gimli::DW_TAG_enumeration_type => "enum",
                gimli::DW_TAG_typedef => "typedef",
                _ => continue,
            };
            let enumerators = self.enumerators(die);
            let name = match (&die.name, enumerators.first()) {
                (Some(name), _) => format!("{keyword} {name}"),
                (None, Some((first, _))) if keyword == "enum" => format!("enum {{ {first}, ... }}"),
                _ => continue,
            };
            out.push(TypeLayout {
                name,
                size: die.size,
                aliases: (die.tag == gimli::DW_TAG_typedef)
                    .then(|| self.describe(die.ty, MAX_DEPTH)),
                members: self.members(die, MAX_DEPTH),
                enumerators,
            });
        }
        out
    }

    fn children<'s>(&'s self, die: &'s Die) -> impl Iterator<Item = &'s Die> + 's {
        die.children.iter().filter_map(|c| self.by_offset.get(c))
    }

    fn members(&self, die: &Die, depth: usize) -> Vec<MemberLayout> {
        self.children(die)
            .filter(|c| c.tag == gimli::DW_TAG_member)
            .map(|m| MemberLayout {
                name: m.name.clone().unwrap_or_default(),
                offset_bits: m.offset_bits,
                bit_size: m.bit_size,
                ty: self.describe(m.ty, depth),
            })
            .collect()
    }

    fn enumerators(&self, die: &Die) -> Vec<(String, i64)> {
        self.children(die)
            .filter(|c| c.tag == gimli::DW_TAG_enumerator)
            .map(|e| (e.name.clone().unwrap_or_default(), e.value.unwrap_or(0)))
            .collect()
    }

    /// A type in words: named types by name, anonymous structs and unions spelled out with
    /// their members, base types with their size.
    fn describe(&self, ty: Option<UnitOffset>, depth: usize) -> String {
        let Some(offset) = ty else {
            return "void".to_string();
        };
        let Some(die) = self.by_offset.get(&offset) else {
            return "?".to_string();
        };
        let Some(depth) = depth.checked_sub(1) else {
            return "...".to_string();
        };
        let name = die.name.as_deref();
        match die.tag {
            gimli::DW_TAG_base_type => {
                format!("{} ({} bytes)", name.unwrap_or("?"), die.size.unwrap_or(0))
            }
            gimli::DW_TAG_pointer_type => format!("{} *", self.describe(die.ty, depth)),
            gimli::DW_TAG_const_type => format!("const {}", self.describe(die.ty, depth)),
            gimli::DW_TAG_volatile_type => format!("volatile {}", self.describe(die.ty, depth)),
            gimli::DW_TAG_restrict_type => format!("restrict {}", self.describe(die.ty, depth)),
            gimli::DW_TAG_atomic_type => format!("_Atomic {}", self.describe(die.ty, depth)),
            gimli::DW_TAG_typedef => name.unwrap_or("?").to_string(),
            gimli::DW_TAG_array_type => {
                let bounds: String = self
                    .children(die)
                    .filter(|c| c.tag == gimli::DW_TAG_subrange_type)
                    .map(|c| c.count.map_or("[]".to_string(), |n| format!("[{n}]")))
                    .collect();
                format!("{}{bounds}", self.describe(die.ty, depth))
            }
            gimli::DW_TAG_subroutine_type => {
                format!("function returning {}", self.describe(die.ty, depth))
            }
            gimli::DW_TAG_structure_type
            | gimli::DW_TAG_union_type
            | gimli::DW_TAG_enumeration_type => {
                let keyword = match die.tag {
                    gimli::DW_TAG_structure_type => "struct",
                    gimli::DW_TAG_union_type => "union",
                    _ => "enum",
                };
                if let Some(name) = name {
                    return format!("{keyword} {name}");
                }
                let inside: Vec<String> = if die.tag == gimli::DW_TAG_enumeration_type {
                    self.enumerators(die)
                        .iter()
                        .map(|(e, v)| format!("{e} = {v}"))
                        .collect()
                } else {
                    self.members(die, depth)
                        .iter()
                        .map(|m| format!("{} at {}: {}", m.name, place(m), m.ty))
                        .collect()
                };
                format!(
                    "{keyword} {{ {} }} ({} bytes)",
                    inside.join("; "),
                    die.size.unwrap_or(0)
                )
            }
            _ => name.unwrap_or("?").to_string(),
        }
    }
}

/// The attributes of `entry` a layout needs.
fn read_die(
    dwarf: &gimli::Dwarf<Slice<'_>>,
    unit: &gimli::Unit<Slice<'_>>,
    entry: &gimli::DebuggingInformationEntry<Slice<'_>>,
) -> Die {
    let constant = |attr| {
        entry
            .attr_value(attr)
            .and_then(|v: AttributeValue<_>| v.udata_value())
    };
    let ty = match entry.attr_value(gimli::DW_AT_type) {
        Some(AttributeValue::UnitRef(offset)) => Some(offset),
        _ => None,
    };
    let bytes = constant(gimli::DW_AT_data_member_location).unwrap_or(0);
    let bits = constant(gimli::DW_AT_data_bit_offset).unwrap_or(0);
    // DWARF 2-3 bit fields: `DW_AT_bit_offset` counts from the storage unit's high bit.
    let legacy = constant(gimli::DW_AT_bit_offset).map(|high| {
        let storage = constant(gimli::DW_AT_byte_size).unwrap_or(0) * 8;
        let width = constant(gimli::DW_AT_bit_size).unwrap_or(0);
        storage.saturating_sub(high).saturating_sub(width)
    });
    let count = constant(gimli::DW_AT_count).or_else(|| {
        entry
            .attr_value(gimli::DW_AT_upper_bound)
            .and_then(|v| v.sdata_value())
            .and_then(|upper| u64::try_from(upper).ok())
            .map(|upper| upper.saturating_add(1))
    });
    Die {
        tag: entry.tag(),
        name: entry
            .attr_value(gimli::DW_AT_name)
            .and_then(|v| dwarf.attr_string(unit, v).ok())
            .map(|s| String::from_utf8_lossy(s.slice()).into_owned()),
        size: constant(gimli::DW_AT_byte_size),
        ty,
        declaration: matches!(
            entry.attr_value(gimli::DW_AT_declaration),
            Some(AttributeValue::Flag(true))
        ),
        offset_bits: bytes
            .saturating_mul(8)
            .saturating_add(bits)
            .saturating_add(legacy.unwrap_or(0)),
        bit_size: constant(gimli::DW_AT_bit_size),
        value: entry
            .attr_value(gimli::DW_AT_const_value)
            .and_then(|v| v.sdata_value()),
        count,
        children: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SOURCE: &str = "#ifdef WIDE\ntypedef long flag_t;\n#else\ntypedef int flag_t;\n#endif\n\
        struct conn { char name[8]; flag_t flags; unsigned ready : 1, mode : 3; struct { int a; } inner; };\n\
        enum state { IDLE, BUSY = STATE_BASE };\n\
        enum { FIRST = 4 };\n\
        int use(struct conn *c, enum state s) { return c->flags + s + FIRST + c->mode; }\n";

    fn layouts(flags: &[&str]) -> Vec<TypeLayout> {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("lib.c"), SOURCE).unwrap();
        let out = dir.path().join("lib.o");
        let status = std::process::Command::new("gcc")
            .args(["-O2", "-g", "-c", "-o"])
            .arg(&out)
            .arg("lib.c")
            .args(flags)
            .current_dir(dir.path())
            .status()
            .unwrap();
        assert!(status.success());
        let bytes = std::fs::read(&out).unwrap();
        let mut units = unit_layouts(&bytes, Some("lib.c")).expect("debug information");
        assert_eq!(units.len(), 1);
        units.remove(0)
    }

    fn named<'a>(all: &'a [TypeLayout], name: &str) -> &'a TypeLayout {
        all.iter()
            .find(|t| t.name == name)
            .unwrap_or_else(|| panic!("{name} in {all:#?}"))
    }

    #[test]
    fn reads_members_bit_fields_enumerators_and_typedefs() {
        let all = layouts(&["-DSTATE_BASE=7"]);
        let conn = named(&all, "struct conn");
        assert_eq!(conn.size, Some(20));
        let flags = &conn.members[1];
        assert_eq!(
            (flags.name.as_str(), flags.offset_bits, flags.ty.as_str()),
            ("flags", 64, "flag_t")
        );
        let mode = &conn.members[3];
        assert_eq!((mode.offset_bits, mode.bit_size), (97, Some(3)));
        assert_eq!(
            conn.members[4].ty,
            "struct { a at offset 0: int (4 bytes) } (4 bytes)"
        );
        assert_eq!(
            named(&all, "typedef flag_t").aliases.as_deref(),
            Some("int (4 bytes)")
        );
        assert_eq!(
            named(&all, "enum state").enumerators,
            [("IDLE".to_string(), 0), ("BUSY".to_string(), 7)]
        );
        assert_eq!(named(&all, "enum { FIRST, ... }").enumerators[0].1, 4);
    }

    #[test]
    fn a_define_that_changes_a_layout_is_a_difference_naming_the_member() {
        let narrow = layouts(&["-DSTATE_BASE=7"]);
        let wide = layouts(&["-DSTATE_BASE=7", "-DWIDE"]);
        assert_eq!(
            difference(named(&wide, "typedef flag_t"), named(&narrow, "typedef flag_t")).unwrap(),
            "`typedef flag_t` names `long int (8 bytes)` in the patch, `int (4 bytes)` in the running binary"
        );
        // The member's type is the typedef in both: its offset is what moved.
        assert_eq!(
            difference(named(&wide, "struct conn"), named(&narrow, "struct conn")).unwrap(),
            "`struct conn`: member `ready` at bit 0 of offset 16 (1 bits) in the patch, bit 0 of offset 12 (1 bits) in the running binary"
        );
        let other = layouts(&["-DSTATE_BASE=9"]);
        assert_eq!(
            difference(named(&other, "enum state"), named(&narrow, "enum state")).unwrap(),
            "`enum state`: `BUSY` is 9 in the patch, 7 in the running binary"
        );
        assert!(difference(named(&narrow, "struct conn"), named(&narrow, "struct conn")).is_none());
    }

    #[test]
    fn an_appended_enumerator_is_no_difference_a_lost_one_is() {
        let enumeration = |values: &[(&str, i64)]| TypeLayout {
            name: "enum state".into(),
            size: Some(4),
            aliases: None,
            members: Vec::new(),
            enumerators: values.iter().map(|(n, v)| (n.to_string(), *v)).collect(),
        };
        let old = enumeration(&[("IDLE", 0), ("BUSY", 1)]);
        let grown = enumeration(&[("IDLE", 0), ("BUSY", 1), ("FAILED", 2)]);
        assert!(difference(&grown, &old).is_none());
        assert_eq!(
            difference(&old, &grown).unwrap(),
            "`enum state`: `FAILED` is 2 in the running binary and not in the patch"
        );
    }

    #[test]
    fn packing_moves_members() {
        let plain = layouts(&["-DSTATE_BASE=1"]);
        let packed = layouts(&["-DSTATE_BASE=1", "-fpack-struct=1"]);
        let text = difference(named(&packed, "struct conn"), named(&plain, "struct conn")).unwrap();
        assert!(text.contains("member `"), "{text}");
    }

    #[test]
    fn garbage_has_no_layouts() {
        assert!(unit_layouts(b"nope", None).is_none());
    }
}
