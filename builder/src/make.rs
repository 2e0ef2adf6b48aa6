//! The compile commands of a Make build from its dry run: every recipe line make would run,
//! printed instead of run, with `Entering directory` lines for sub-makes.
//!
//! The dry run is `make -n -w -W SRC...`: "what would you run if these sources had just
//! changed". Not `-B`: with every target out of date, make also remakes its makefiles, and it
//! does so even under `-n` — in an Autotools tree that re-runs `aclocal`, `automake`,
//! `autoconf` and `configure`, writing into the user's tree. `-W` is not passed down to
//! sub-makes, so it is also put into `MAKE`, the variable recursive makefiles run.

use std::path::{Component, Path, PathBuf};

use crate::command::normalize;

/// Above this many bytes of `-W` options (the `MAKE` variable travels in one environment string,
/// limited to 128 KiB), only the sources' file names are given.
const MAX_WHAT_IF: usize = 100_000;

/// The arguments of the dry run in `dir`: `-n -w`, and `-W` for each repository source as a
/// makefile may name it — its repository path, its file name, and its path relative to `dir`
/// when the work tree is known (an out-of-tree build) — also in `MAKE=make -W ...`.
pub fn dry_run_arguments(dir: &Path, work_tree: Option<&Path>, repo_files: &[&str]) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    let mut add = |name: String| {
        if !name.is_empty() && !names.contains(&name) {
            names.push(name);
        }
    };
    for file in repo_files {
        add(file.to_string());
        if let Some(name) = Path::new(file).file_name() {
            add(name.to_string_lossy().into_owned());
        }
        if let Some(tree) = work_tree {
            if let Some(relative) = relative_to(&tree.join(file), dir) {
                add(relative.to_string_lossy().into_owned());
            }
        }
    }
    if names.iter().map(|n| n.len() + 4).sum::<usize>() > MAX_WHAT_IF {
        names.retain(|n| !n.contains('/'));
    }
    let what_if: Vec<String> = names.iter().map(|n| format!("-W{n}")).collect();
    let mut out = vec!["-n".to_string(), "-w".to_string()];
    out.extend(what_if.iter().cloned());
    let quoted: Vec<String> = what_if
        .iter()
        .map(|w| {
            shlex::try_quote(w)
                .map(|q| q.into_owned())
                .unwrap_or_else(|_| w.clone())
        })
        .collect();
    out.push(format!("MAKE=make {}", quoted.join(" ")));
    out
}

/// `path` relative to the directory `base` (both absolute), with `..` where needed.
fn relative_to(path: &Path, base: &Path) -> Option<PathBuf> {
    let (path, base) = (normalize(path), normalize(base));
    let path: Vec<Component> = path.components().collect();
    let base: Vec<Component> = base.components().collect();
    if path.first() != Some(&Component::RootDir) || base.first() != Some(&Component::RootDir) {
        return None;
    }
    let common = path.iter().zip(&base).take_while(|(a, b)| a == b).count();
    let mut out = PathBuf::new();
    for _ in common..base.len() {
        out.push("..");
    }
    for component in &path[common..] {
        out.push(component.as_os_str());
    }
    Some(out)
}

/// Words that separate the commands of one shell line.
const SEPARATORS: [&str; 5] = ["&&", "||", ";", "|", "&"];

/// Programs that run the compiler named after them.
const WRAPPERS: [&str; 3] = ["ccache", "distcc", "sccache"];

/// The compiler invocations (`-c` and a `.c` source) of a dry run's output, each with the
/// directory it runs in. `top` is the directory make was started in.
pub fn compiles(output: &str, top: &Path) -> Vec<(PathBuf, Vec<String>)> {
    let mut out = Vec::new();
    let mut directories = vec![top.to_path_buf()];
    for line in logical_lines(output) {
        if let Some(change) = directory_change(&line) {
            match change {
                DirectoryChange::Enter(dir) => directories.push(dir),
                DirectoryChange::Leave => {
                    if directories.len() > 1 {
                        directories.pop();
                    }
                }
            }
            continue;
        }
        let Some(words) = shlex::split(&without_command_substitutions(&line)) else {
            continue;
        };
        let mut cwd = directories
            .last()
            .cloned()
            .unwrap_or_else(|| top.to_path_buf());
        for command in split_commands(words) {
            match command.first().map(String::as_str) {
                Some("cd") => {
                    if let Some(dir) = command.get(1) {
                        cwd = normalize(&cwd.join(dir));
                    }
                }
                _ => {
                    let libtool = libtool_compile(&command).is_some();
                    if let Some(arguments) = compiler_invocation(command) {
                        // libtool compiles a file twice from this one line: for the shared
                        // library with its PIC flags, and plainly for the static one. Both are
                        // candidates; the running code says which one it is.
                        if libtool {
                            let mut pic = arguments.clone();
                            pic.extend(["-fPIC".to_string(), "-DPIC".to_string()]);
                            out.push((cwd.clone(), pic));
                        }
                        out.push((cwd.clone(), arguments));
                    }
                }
            }
        }
    }
    out
}

/// `line` without its backquoted command substitutions (outside single quotes): Automake's
/// `` `test -f 'a.c' || echo './'`a.c `` leaves `a.c`, and `depbase=`echo a.o`;` its `;`.
fn without_command_substitutions(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let (mut in_single, mut in_backquote) = (false, false);
    for c in line.chars() {
        match c {
            '`' if !in_single => in_backquote = !in_backquote,
            _ if in_backquote => {}
            '\'' => {
                in_single = !in_single;
                out.push(c);
            }
            _ => out.push(c),
        }
    }
    out
}

/// The lines of the output with backslash-newline continuations joined.
fn logical_lines(output: &str) -> Vec<String> {
    let mut lines = Vec::new();
    let mut current = String::new();
    for line in output.lines() {
        match line.strip_suffix('\\') {
            Some(head) => {
                current.push_str(head);
                current.push(' ');
            }
            None => {
                current.push_str(line);
                lines.push(std::mem::take(&mut current));
            }
        }
    }
    if !current.is_empty() {
        lines.push(current);
    }
    lines
}

enum DirectoryChange {
    Enter(PathBuf),
    Leave,
}

/// `make[1]: Entering directory '/x'` and `make[1]: Leaving directory '/x'` (GNU make, `-w`).
fn directory_change(line: &str) -> Option<DirectoryChange> {
    let (program, rest) = line.split_once(": ")?;
    if !program.starts_with("make") && !program.contains("/make") {
        return None;
    }
    let quoted = |text: &str| -> Option<PathBuf> {
        let start = text.find(['\'', '`'])? + 1;
        let end = text.rfind('\'')?;
        (end > start).then(|| PathBuf::from(&text[start..end]))
    };
    if let Some(text) = rest.strip_prefix("Entering directory ") {
        return quoted(text).map(DirectoryChange::Enter);
    }
    rest.strip_prefix("Leaving directory ")
        .map(|_| DirectoryChange::Leave)
}

/// The commands of a shell line, split at `&&`, `;`, `|` and the like, also where a `;` or `&&`
/// is glued to words (`cd src;`, redis's quiet recipes `printf '...' 1>&2;cc ...`). An option
/// (`-DX="a;b"`) is never split.
fn split_commands(words: Vec<String>) -> Vec<Vec<String>> {
    let mut commands = vec![Vec::new()];
    for word in words {
        if SEPARATORS.contains(&word.as_str()) {
            commands.push(Vec::new());
            continue;
        }
        let pieces: Vec<String> = if word.starts_with('-') {
            vec![word]
        } else {
            word.replace("&&", ";")
                .split(';')
                .map(str::to_string)
                .collect()
        };
        let last = pieces.len() - 1;
        for (i, piece) in pieces.into_iter().enumerate() {
            if !piece.is_empty() {
                if let Some(command) = commands.last_mut() {
                    command.push(piece);
                }
            }
            if i < last {
                commands.push(Vec::new());
            }
        }
    }
    commands.retain(|c| !c.is_empty());
    commands
}

/// Where `--mode=compile` stands in a libtool command (`libtool --tag=CC --mode=compile gcc ...`).
fn libtool_compile(command: &[String]) -> Option<usize> {
    command.iter().position(|w| w == "--mode=compile")
}

/// The compiler's command line when `command` compiles a C file (`-c` and a `.c` input): the
/// environment assignments before it, a compiler wrapper (`ccache`) and a libtool prefix
/// (`libtool --mode=compile`) left out.
fn compiler_invocation(command: Vec<String>) -> Option<Vec<String>> {
    let mut words: Vec<String> = match libtool_compile(&command) {
        Some(at) => command[at + 1..].to_vec(),
        None => command,
    };
    let skip = words
        .iter()
        .take_while(|w| {
            let name = Path::new(w.as_str())
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            (w.contains('=') && !w.starts_with('-')) || WRAPPERS.contains(&name.as_str())
        })
        .count();
    words.drain(..skip);
    let program = words.first()?;
    if program.starts_with('-') || matches!(program.as_str(), "echo" | "printf" | ":" | "true") {
        return None;
    }
    let compiles = words.iter().any(|w| w == "-c")
        && words
            .iter()
            .skip(1)
            .any(|w| !w.starts_with('-') && w.ends_with(".c"));
    compiles.then_some(words)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sub_makes_cd_recipes_and_continuations() {
        let output = "\
make: Entering directory '/p'
echo \"CC x\"
cd src && gcc -O2 -I../include \\
  -c t_list.c -o t_list.o
make[1]: Entering directory '/p/lib'
depbase=`echo a.o | sed 's|[^/]*$|.deps/&|'`;\\
ccache cc -DHAVE_CONFIG_H -I. -c -o a.o `test -f 'a.c' || echo './'`a.c &&\\
mv -f $depbase.Tpo $depbase.Po
/bin/bash ../libtool --tag=CC --mode=compile gcc -O1 -c b.c -o b.lo
make[1]: Leaving directory '/p/lib'
gcc -o app src/t_list.o lib/a.o
CFLAGS=-O0 cc -c -O3 'we ird.c'
printf '    %b %b\\n' CC server.o 1>&2;cc -O3 -DX='a;b' -c server.c
make: Leaving directory '/p'
";
        let found = compiles(output, Path::new("/p"));
        let s = |v: &[&str]| v.iter().map(|w| w.to_string()).collect::<Vec<_>>();
        assert_eq!(
            found,
            [
                (
                    PathBuf::from("/p/src"),
                    s(&[
                        "gcc",
                        "-O2",
                        "-I../include",
                        "-c",
                        "t_list.c",
                        "-o",
                        "t_list.o"
                    ])
                ),
                (
                    PathBuf::from("/p/lib"),
                    s(&["cc", "-DHAVE_CONFIG_H", "-I.", "-c", "-o", "a.o", "a.c"])
                ),
                (
                    PathBuf::from("/p/lib"),
                    s(&["gcc", "-O1", "-c", "b.c", "-o", "b.lo", "-fPIC", "-DPIC"])
                ),
                (
                    PathBuf::from("/p/lib"),
                    s(&["gcc", "-O1", "-c", "b.c", "-o", "b.lo"])
                ),
                (PathBuf::from("/p"), s(&["cc", "-c", "-O3", "we ird.c"])),
                (
                    PathBuf::from("/p"),
                    s(&["cc", "-O3", "-DX=a;b", "-c", "server.c"])
                ),
            ]
        );
    }

    #[test]
    fn dry_run_asks_for_every_source_as_makefiles_may_name_it() {
        let args = dry_run_arguments(
            Path::new("/w/build"),
            Some(Path::new("/w")),
            &["src/a.c", "b.c"],
        );
        assert_eq!(
            args,
            [
                "-n",
                "-w",
                "-Wsrc/a.c",
                "-Wa.c",
                "-W../src/a.c",
                "-Wb.c",
                "-W../b.c",
                "MAKE=make -Wsrc/a.c -Wa.c -W../src/a.c -Wb.c -W../b.c"
            ]
        );
    }

    #[test]
    fn noise_is_ignored() {
        assert!(compiles(
            "make: Nothing to be done for 'all'.\n\"unbalanced\n",
            Path::new("/")
        )
        .is_empty());
        assert!(compiles("printf '%s' -c x.c\n", Path::new("/")).is_empty());
    }
}
