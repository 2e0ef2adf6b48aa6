//! What the binary's DWARF says for the register contract: which compile unit holds each piece
//! of code (gcc's `-fipa-ra` only works within one compilation: a file, or an LTO partition), and
//! whether a function receives arguments on the stack (a save/restore thunk pushes registers
//! between the caller's frame and the function, so it is only used for a function whose every
//! argument travels in registers: System V classification, counted conservatively).

use gimli::{AttributeValue, UnitOffset};

use crate::debuginfo::{with_dwarf, Slice};

/// Integer registers for arguments.
const INT_REGS: u32 = 6;
/// Vector registers for arguments.
const SSE_REGS: u32 = 8;
/// How deep type references are followed.
const MAX_TYPE_DEPTH: usize = 12;

type Dwarf<'a> = gimli::Dwarf<Slice<'a>>;
type Unit<'a> = gimli::Unit<Slice<'a>>;

/// `Ok` when the DWARF of `elf` proves the function whose code starts at link-time address
/// `low_pc` takes every argument in registers; otherwise why that is not proven.
pub(crate) fn registers_only(elf: &[u8], low_pc: u64) -> Result<(), String> {
    with_dwarf(elf, |dwarf| {
        let units = all_units(dwarf);
        let (unit, offset) = find_subprogram(dwarf, &units, low_pc)
            .ok_or_else(|| format!("its debug information has no function at {low_pc:#x}"))?;
        let reader = Types { units: &units };
        reader.check(unit, offset)
    })
    .unwrap_or_else(|| Err("the binary has no debug information".to_string()))
}

/// The link-time address ranges of each compile unit's code, as (start, end, unit number);
/// empty without debug information.
pub(crate) fn compile_units(elf: &[u8]) -> Vec<(u64, u64, usize)> {
    with_dwarf(elf, |dwarf| {
        let mut out = Vec::new();
        for (index, unit) in all_units(dwarf).iter().enumerate() {
            let Ok(mut ranges) = dwarf.unit_ranges(unit) else {
                continue;
            };
            while let Ok(Some(range)) = ranges.next() {
                if range.end > range.begin {
                    out.push((range.begin, range.end, index));
                }
            }
        }
        out
    })
    .unwrap_or_default()
}

fn all_units<'a>(dwarf: &Dwarf<'a>) -> Vec<Unit<'a>> {
    let mut out = Vec::new();
    let mut headers = dwarf.units();
    while let Ok(Some(header)) = headers.next() {
        if let Ok(unit) = dwarf.unit(header) {
            out.push(unit);
        }
    }
    out
}

fn find_subprogram(
    dwarf: &Dwarf<'_>,
    units: &[Unit<'_>],
    low_pc: u64,
) -> Option<(usize, UnitOffset)> {
    for (index, unit) in units.iter().enumerate() {
        let mut entries = unit.entries();
        while let Ok(Some(entry)) = entries.next_dfs() {
            if entry.tag() != gimli::DW_TAG_subprogram {
                continue;
            }
            let Some(value) = entry.attr_value(gimli::DW_AT_low_pc) else {
                continue;
            };
            if dwarf.attr_address(unit, value).ok().flatten() == Some(low_pc) {
                return Some((index, entry.offset()));
            }
        }
    }
    None
}

/// Reads types across the units of one binary.
struct Types<'d, 'a> {
    units: &'d [Unit<'a>],
}

/// Registers an argument list needs: (integer, vector).
#[derive(Default)]
struct Count {
    ints: u32,
    sses: u32,
}

impl Types<'_, '_> {
    /// The entry a reference attribute points to, in whichever unit holds it.
    fn follow(&self, unit: usize, value: AttributeValue<Slice<'_>>) -> Option<(usize, UnitOffset)> {
        match value {
            AttributeValue::UnitRef(offset) => Some((unit, offset)),
            AttributeValue::DebugInfoRef(offset) => self
                .units
                .iter()
                .enumerate()
                .find_map(|(i, u)| offset.to_unit_offset(&u.header).map(|o| (i, o))),
            _ => None,
        }
    }

    /// The subprogram's declaration: through `DW_AT_abstract_origin`/`DW_AT_specification`.
    fn declaration(&self, mut at: (usize, UnitOffset)) -> (usize, UnitOffset) {
        for _ in 0..4 {
            let Ok(entry) = self.units[at.0].entry(at.1) else {
                break;
            };
            let origin = entry
                .attr_value(gimli::DW_AT_abstract_origin)
                .or_else(|| entry.attr_value(gimli::DW_AT_specification));
            match origin.and_then(|v| self.follow(at.0, v)) {
                Some(next) => at = next,
                None => break,
            }
        }
        at
    }

    fn check(&self, unit: usize, offset: UnitOffset) -> Result<(), String> {
        let (unit, offset) = self.declaration((unit, offset));
        let u = &self.units[unit];
        let mut count = Count::default();
        let subprogram = u.entry(offset).map_err(|e| e.to_string())?;
        if let Some(returned) = subprogram.attr_value(gimli::DW_AT_type) {
            // An aggregate result may come back through memory: its address takes rdi.
            if self.is_aggregate(unit, returned) {
                count.ints += 1;
            }
        }
        let mut entries = u.entries_at_offset(offset).map_err(|e| e.to_string())?;
        let top = match entries.next_dfs() {
            Ok(Some(entry)) => entry.depth(),
            _ => return Err("its debug information cannot be read".into()),
        };
        while let Ok(Some(entry)) = entries.next_dfs() {
            if entry.depth() <= top {
                break;
            }
            if entry.depth() != top + 1 {
                continue;
            }
            match entry.tag() {
                gimli::DW_TAG_unspecified_parameters => {
                    return Err("it takes variable arguments".into())
                }
                gimli::DW_TAG_formal_parameter => {
                    let ty = entry.attr_value(gimli::DW_AT_type).ok_or_else(|| {
                        "a parameter has no type in its debug information".to_string()
                    })?;
                    self.classify(unit, ty, 0, &mut count)?;
                }
                _ => {}
            }
        }
        if count.ints > INT_REGS || count.sses > SSE_REGS {
            return Err(format!(
                "its arguments may need {} integer and {} vector registers, more than the ABI passes in registers",
                count.ints, count.sses
            ));
        }
        Ok(())
    }

    /// The type entry behind typedefs and qualifiers.
    fn strip(&self, unit: usize, value: AttributeValue<Slice<'_>>) -> Option<(usize, UnitOffset)> {
        let mut at = self.follow(unit, value)?;
        for _ in 0..MAX_TYPE_DEPTH {
            let entry = self.units[at.0].entry(at.1).ok()?;
            let qualifier = matches!(
                entry.tag(),
                gimli::DW_TAG_typedef
                    | gimli::DW_TAG_const_type
                    | gimli::DW_TAG_volatile_type
                    | gimli::DW_TAG_restrict_type
                    | gimli::DW_TAG_atomic_type
            );
            if !qualifier {
                return Some(at);
            }
            at = self.follow(at.0, entry.attr_value(gimli::DW_AT_type)?)?;
        }
        None
    }

    fn is_aggregate(&self, unit: usize, value: AttributeValue<Slice<'_>>) -> bool {
        self.strip(unit, value).is_none_or(|(u, o)| {
            self.units[u].entry(o).map_or(true, |e| {
                !matches!(
                    e.tag(),
                    gimli::DW_TAG_base_type
                        | gimli::DW_TAG_pointer_type
                        | gimli::DW_TAG_enumeration_type
                        | gimli::DW_TAG_unspecified_type
                )
            })
        })
    }

    /// Adds the registers one argument of type `value` needs, at most; refuses what may go on
    /// the stack.
    fn classify(
        &self,
        unit: usize,
        value: AttributeValue<Slice<'_>>,
        depth: usize,
        count: &mut Count,
    ) -> Result<(), String> {
        let unknown = || "a parameter's type cannot be read from its debug information".to_string();
        if depth > MAX_TYPE_DEPTH {
            return Err(unknown());
        }
        let (u, o) = self.strip(unit, value).ok_or_else(unknown)?;
        let entry = self.units[u].entry(o).map_err(|_| unknown())?;
        let size = entry
            .attr_value(gimli::DW_AT_byte_size)
            .and_then(|v| v.udata_value());
        match entry.tag() {
            gimli::DW_TAG_pointer_type | gimli::DW_TAG_enumeration_type => count.ints += 1,
            gimli::DW_TAG_base_type => {
                let encoding = match entry.attr_value(gimli::DW_AT_encoding) {
                    Some(AttributeValue::Encoding(e)) => e,
                    _ => return Err(unknown()),
                };
                let float = matches!(
                    encoding,
                    gimli::DW_ATE_float | gimli::DW_ATE_complex_float | gimli::DW_ATE_decimal_float
                );
                match (float, size) {
                    (false, Some(1..=8)) => count.ints += 1,
                    (false, Some(16)) => count.ints += 2,
                    (true, Some(1..=8)) => count.sses += 1,
                    (true, Some(16)) if encoding == gimli::DW_ATE_complex_float => count.sses += 2,
                    _ => {
                        return Err(
                            "a parameter is a long double or wider scalar, passed on the stack"
                                .into(),
                        )
                    }
                }
            }
            gimli::DW_TAG_structure_type | gimli::DW_TAG_union_type => {
                let size = size.ok_or_else(unknown)?;
                if size > 16 {
                    return Err(format!(
                        "a parameter is a {size}-byte aggregate, passed on the stack"
                    ));
                }
                self.plain_members(u, o, depth)?;
                // Each eightbyte may be integer or vector: count both.
                let eightbytes = size.div_ceil(8) as u32;
                count.ints += eightbytes;
                count.sses += eightbytes;
            }
            _ => return Err(unknown()),
        }
        Ok(())
    }

    /// Checks that every member of a small aggregate is a naturally aligned scalar (or such an
    /// aggregate): anything else (packed fields, `long double`) is passed in memory.
    fn plain_members(&self, unit: usize, offset: UnitOffset, depth: usize) -> Result<(), String> {
        let odd = || {
            "a parameter is a small aggregate with members the ABI may pass in memory".to_string()
        };
        let u = &self.units[unit];
        let mut entries = u.entries_at_offset(offset).map_err(|_| odd())?;
        let top = match entries.next_dfs() {
            Ok(Some(entry)) => entry.depth(),
            _ => return Err(odd()),
        };
        let mut members = Vec::new();
        while let Ok(Some(entry)) = entries.next_dfs() {
            if entry.depth() <= top {
                break;
            }
            if entry.depth() == top + 1 && entry.tag() == gimli::DW_TAG_member {
                let at = entry
                    .attr_value(gimli::DW_AT_data_member_location)
                    .and_then(|v| v.udata_value())
                    .unwrap_or(0);
                members.push((at, entry.attr_value(gimli::DW_AT_type).ok_or_else(odd)?));
            }
        }
        for (at, ty) in members {
            let mut inner = Count::default();
            self.classify(unit, ty, depth + 1, &mut inner)
                .map_err(|_| odd())?;
            let (mu, mo) = self.strip(unit, ty).ok_or_else(odd)?;
            let member_size = self.units[mu]
                .entry(mo)
                .ok()
                .and_then(|e| e.attr_value(gimli::DW_AT_byte_size))
                .and_then(|v| v.udata_value())
                .unwrap_or(8)
                .clamp(1, 8);
            if at % member_size != 0 {
                return Err(odd());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SOURCE: &str = r#"
struct pair { long a, b; };
struct three { long a, b, c; };
struct mixed { double d; int i; };
struct __attribute__((packed)) odd { char c; int i; };
typedef const unsigned long word;
int one(int x) { return x; }
long six(long a, long b, long c, long d, long e, long f) { return a + b + c + d + e + f; }
long seven(long a, long b, long c, long d, long e, long f, long g) { return a + b + c + d + e + f + g; }
double eight(double a, double b, double c, double d, double e, double f, double g, double h) { return a + b + c + d + e + f + g + h; }
double nine(double a, double b, double c, double d, double e, double f, double g, double h, double i) { return a + b + c + d + e + f + g + h + i; }
long small(struct pair p, word w) { return p.a + p.b + (long)w; }
long mix(struct mixed m) { return (long)m.d + m.i; }
long big(struct three t) { return t.a + t.b + t.c; }
long packed(struct odd o) { return o.c + o.i; }
long wide(long double x) { return (long)x; }
long vary(int n, ...) { return n; }
struct three ret(long a, long b, long c, long d, long e) { struct three t = {a + b, c + d, e}; return t; }
struct three ret6(long a, long b, long c, long d, long e, long f) { struct three t = {a + b, c + d, e + f}; return t; }
void *ptr(void *p, int (*f)(int)) { return f ? p : 0; }
"#;

    #[test]
    fn stack_arguments_from_gcc_debug_information() {
        let (bytes, address) = crate::test_support::gcc_shared_object(SOURCE);
        let check = |name: &str| registers_only(&bytes, address(name));
        for name in ["one", "six", "eight", "small", "mix", "ret", "ptr"] {
            assert_eq!(check(name), Ok(()), "{name}");
        }
        for (name, why) in [
            ("seven", "7 integer"),
            ("nine", "9 vector"),
            ("big", "24-byte aggregate"),
            ("packed", "small aggregate"),
            ("wide", "long double"),
            ("vary", "variable arguments"),
            ("ret6", "7 integer"),
        ] {
            let err = check(name).unwrap_err();
            assert!(err.contains(why), "{name}: {err}");
        }
        assert!(registers_only(&bytes, 1)
            .unwrap_err()
            .contains("no function"));
        assert!(registers_only(b"not elf", 0)
            .unwrap_err()
            .contains("no debug information"));
        let units = compile_units(&bytes);
        assert!(units
            .iter()
            .any(|&(lo, hi, _)| lo <= address("one") && address("one") < hi));
    }
}
