//! Tidy: the architecture rules of `design.md` and `style.md`, enforced by reading the
//! source tree. Each rule is a pure function over (path, text) so that a negative
//! self-test on a synthetic string proves the checker can fail; the tree test then
//! applies it to every file under `src/`. The lint wall's rules read `Cargo.toml` and
//! `clippy.toml`, and the sources of every target.
//!
//! Scanning is textual. Comments are stripped before matching (a doc comment may say
//! "no glommio here"), string literals are kept (an import spelled in a string is rare
//! enough to be worth a look). Extend `LAYERS` when a new layer or dependency appears.

use std::fs;
use std::path::{Path, PathBuf};

/// Layer rules: files under the prefix must not mention any of the patterns.
/// Order: `paxos` ← `wal` ← `transport` ← `runtime` ← `api` ← `server`/`bench`/`client`;
/// `sim` may use everything below `api`.
const LAYERS: &[(&str, &[&str])] = &[
    (
        "src/paxos/",
        &[
            "crate::wal",
            "crate::transport",
            "crate::runtime",
            "crate::sim",
            "crate::api",
            "crate::server",
            "crate::bench",
            "crate::client",
            "std::time",
            "std::fs",
            "std::net",
            "std::thread",
            "std::sync",
            "glommio",
            "tokio",
            // Sans-IO and deterministic: the driver and the listener trace around it.
            "tracing",
            "async ",
            ".await",
            "Instant",
            "SystemTime",
        ],
    ),
    (
        "src/wal/",
        &[
            "crate::transport",
            "crate::runtime",
            "crate::api",
            "crate::sim",
            "crate::server",
            "crate::bench",
            "crate::client",
        ],
    ),
    (
        "src/transport/",
        &[
            "crate::runtime",
            "crate::api",
            "crate::sim",
            "crate::server",
            "crate::bench",
            "crate::client",
        ],
    ),
    (
        "src/runtime/",
        &[
            "crate::api",
            "crate::sim",
            "crate::server",
            "crate::bench",
            "crate::client",
        ],
    ),
    (
        "src/api/",
        &[
            "crate::sim",
            "crate::server",
            "crate::bench",
            "crate::client",
        ],
    ),
    // The client library speaks the client protocol it owns; the node's listener
    // (`server`) uses that protocol, never the other way round.
    (
        "src/client/",
        &["crate::sim", "crate::server", "crate::bench", "glommio"],
    ),
    ("src/server/", &["crate::sim", "crate::bench", "glommio"]),
    // The key-value state machine is applied by every replica: deterministic, above
    // `api` (its `StateMachine`), below the client and the listener, no clock, no I/O.
    (
        "src/kv/",
        &[
            "crate::sim",
            "crate::server",
            "crate::bench",
            "crate::client",
            "crate::runtime",
            "crate::wal",
            "crate::transport",
            "glommio",
            "std::time",
            "std::fs",
            "std::net",
            "Instant",
            "SystemTime",
        ],
    ),
    // Checkers of recorded histories: pure functions over data, below every layer.
    (
        "src/check/",
        &[
            "crate::paxos",
            "crate::wal",
            "crate::transport",
            "crate::runtime",
            "crate::api",
            "crate::sim",
            "crate::server",
            "crate::bench",
            "crate::client",
            "std::time",
            "std::fs",
            "std::net",
            "std::thread",
            "glommio",
            "tokio",
        ],
    ),
    (
        "src/sim/",
        &[
            "crate::api",
            "crate::server",
            "crate::bench",
            "crate::client",
        ],
    ),
];

/// The only file in `src/` that may read the OS clock.
const CLOCK_FILE: &str = "src/runtime/clock.rs";
const CLOCK_READS: &[&str] = &["Instant::now", "SystemTime::now", "clock_gettime"];

/// The only files in `src/` that may use glommio (the binary: `src/main.rs`, `src/bin/`,
/// `src/cli/`).
const GLOMMIO_FILES: &[&str] = &[
    "src/runtime/net/mod.rs",
    "src/runtime/net/link.rs",
    "src/runtime/net/listen.rs",
    "src/wal/file/dma_disk.rs",
    "src/main.rs",
];
const GLOMMIO_DIRS: &[&str] = &[
    "src/bin/",
    "src/cli/",
    "src/runtime/driver/",
    "src/runtime/net/tests/",
];

/// flatc output: not written by hand (`tools/flatc.sh --check` guards it), so exempt
/// from the module-doc and unwrap rules.
const GENERATED_DIR: &str = "src/transport/generated/";

/// Most non-test lines (lines outside a `#[cfg(test)]` module, comments included) a
/// hand-written file under `src/` may have: past this, split it by concern.
const FILE_LINES_MAX: usize = 1_000;

/// Files over `FILE_LINES_MAX` when the rule arrived, with their non-test line count
/// then. Each may shrink but never grow; when a split brings one under the limit, the
/// tree test asks for its line to be removed, until the list is empty.
const FILE_LINES_OVER: &[(&str, usize)] = &[];

// ---------------------------------------------------------------------------------------
// The tree.

struct Source {
    /// Path relative to the crate root, with `/` separators (e.g. `src/paxos/group.rs`).
    path: String,
    text: String,
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn collect(dir: &Path, out: &mut Vec<Source>) {
    let entries = fs::read_dir(dir).unwrap_or_else(|e| panic!("read_dir {}: {e}", dir.display()));
    for entry in entries {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            collect(&path, out);
        } else if path.extension().is_some_and(|x| x == "rs") {
            let text = fs::read_to_string(&path)
                .unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
            let rel = path
                .strip_prefix(root())
                .expect("under the crate root")
                .to_string_lossy()
                .replace('\\', "/");
            out.push(Source { path: rel, text });
        }
    }
}

fn sources() -> Vec<Source> {
    let mut out = Vec::new();
    collect(&root().join("src"), &mut out);
    out.sort_by(|a, b| a.path.cmp(&b.path));
    // The checker must look at something: an empty walk would pass every rule.
    assert!(
        out.iter().any(|s| s.path == "src/paxos/group.rs"),
        "tidy: the walk of src/ did not find src/paxos/group.rs ({} files found)",
        out.len()
    );
    out
}

fn is_generated(path: &str) -> bool {
    path.starts_with(GENERATED_DIR)
}

/// Runs `rule` on every source and fails with every violation listed.
fn check_tree(rule_name: &str, rule: impl Fn(&str, &str) -> Vec<String>) {
    let mut violations = Vec::new();
    for source in sources() {
        violations.extend(rule(&source.path, &source.text));
    }
    assert!(
        violations.is_empty(),
        "tidy rule '{rule_name}' violated {} time(s):\n  {}",
        violations.len(),
        violations.join("\n  ")
    );
}

// ---------------------------------------------------------------------------------------
// Scanning helpers.

/// The text with comments removed, line structure kept (so line numbers still match).
/// Handles `//` and nested `/* */`, string literals with escapes and char literals;
/// raw strings are treated as ordinary strings (good enough for this purpose).
fn strip_comments(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let mut block_depth = 0usize;
    let mut in_string = false;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if block_depth > 0 {
            if c == '/' && next == Some('*') {
                block_depth += 1;
                i += 2;
            } else if c == '*' && next == Some('/') {
                block_depth -= 1;
                i += 2;
            } else {
                if c == '\n' {
                    out.push('\n');
                }
                i += 1;
            }
            continue;
        }
        if in_string {
            out.push(c);
            if c == '\\' {
                if let Some(n) = next {
                    out.push(n);
                }
                i += 2;
                continue;
            }
            if c == '"' {
                in_string = false;
            }
            i += 1;
            continue;
        }
        match c {
            '/' if next == Some('/') => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
            }
            '/' if next == Some('*') => {
                block_depth = 1;
                i += 2;
            }
            '"' => {
                in_string = true;
                out.push(c);
                i += 1;
            }
            '\'' => {
                // A char literal ('x', '\n', '\'', '"') or a lifetime ('a).
                let len = if next == Some('\\') {
                    chars[i + 2..]
                        .iter()
                        .skip(1)
                        .position(|&ch| ch == '\'')
                        .map_or(1, |p| p + 4)
                } else if chars.get(i + 2) == Some(&'\'') {
                    3
                } else {
                    1
                };
                out.extend(&chars[i..(i + len).min(chars.len())]);
                i += len;
            }
            _ => {
                out.push(c);
                i += 1;
            }
        }
    }
    out
}

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Whether `line` mentions `pattern`; an identifier at either end of the pattern must
/// not continue into the surrounding text (`Instant` does not match `Instantiate`,
/// `crate::wal` does not match `crate::walrus`).
fn mentions(line: &str, pattern: &str) -> bool {
    let starts_ident = pattern.starts_with(is_ident);
    let ends_ident = pattern.ends_with(is_ident);
    let mut from = 0;
    while let Some(pos) = line[from..].find(pattern) {
        let start = from + pos;
        let end = start + pattern.len();
        let before_ok = !starts_ident || !line[..start].ends_with(is_ident);
        let after_ok = !ends_ident || !line[end..].starts_with(is_ident);
        if before_ok && after_ok {
            return true;
        }
        from = start + pattern.chars().next().map_or(1, char::len_utf8);
    }
    false
}

/// `path:line: what` for every code line (comments stripped) mentioning a pattern.
fn find_mentions(path: &str, text: &str, patterns: &[&str], why: &str) -> Vec<String> {
    let mut found = Vec::new();
    for (n, line) in strip_comments(text).lines().enumerate() {
        for pattern in patterns {
            if mentions(line, pattern) {
                found.push(format!("{path}:{}: `{pattern}` {why}", n + 1));
            }
        }
    }
    found
}

/// The lines before the first line containing `#[cfg(test)]`, with their numbers.
fn before_cfg_test(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .enumerate()
        .take_while(|(_, line)| !line.contains("#[cfg(test)]"))
        .map(|(n, line)| (n + 1, line))
}

/// The net change of brace depth on `line` (comments already stripped), ignoring braces
/// inside string and char literals. `in_string` carries an open string across lines.
fn brace_delta(line: &str, in_string: &mut bool) -> isize {
    let chars: Vec<char> = line.chars().collect();
    let mut delta = 0;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if *in_string {
            match c {
                '\\' => i += 1,
                '"' => *in_string = false,
                _ => {}
            }
        } else {
            match c {
                '"' => *in_string = true,
                '{' => delta += 1,
                '}' => delta -= 1,
                // A char literal such as '{' or '\'' (a lifetime has no closing quote).
                '\'' if chars.get(i + 1) == Some(&'\\') => {
                    i += chars[i + 2..]
                        .iter()
                        .skip(1)
                        .position(|&ch| ch == '\'')
                        .map_or(1, |p| p + 3);
                }
                '\'' if chars.get(i + 2) == Some(&'\'') => i += 2,
                _ => {}
            }
        }
        i += 1;
    }
    delta
}

/// Whether an item's first line declares a module (`mod x {`, `pub(crate) mod x;`).
fn declares_mod(item: &str) -> bool {
    let item = item.trim_start();
    let item = item
        .strip_prefix("pub(crate) ")
        .or_else(|| item.strip_prefix("pub(super) "))
        .or_else(|| item.strip_prefix("pub "))
        .unwrap_or(item);
    item.starts_with("mod ")
}

/// Lines of `text` outside every `#[cfg(test)]` module (an inline `mod x { .. }` or a
/// `mod x;` declaration). Comments count as lines; a `#[cfg(test)]` on anything but a
/// module (a helper function, an impl) does not exempt it.
fn non_test_lines(text: &str) -> usize {
    let code = strip_comments(text);
    let lines: Vec<&str> = code.lines().collect();
    let mut count = 0;
    let mut i = 0;
    while i < lines.len() {
        let Some(after) = lines[i].trim_start().strip_prefix("#[cfg(test)]") else {
            count += 1;
            i += 1;
            continue;
        };
        // The item the attribute applies to: the rest of this line, or the next line
        // that is neither blank nor another attribute.
        let item_line = if after.trim().is_empty() {
            (i + 1..lines.len())
                .find(|&j| !lines[j].trim().is_empty() && !lines[j].trim_start().starts_with("#["))
        } else {
            Some(i)
        };
        let Some(j) = item_line else {
            count += 1;
            i += 1;
            continue;
        };
        let item = if j == i { after } else { lines[j] };
        if !declares_mod(item) {
            count += 1;
            i += 1;
            continue;
        }
        // Skip through the end of the module: its `;`, or the brace that closes it.
        let mut end = j;
        let declared_out_of_line = item.contains(';') && !item.contains('{');
        if !declared_out_of_line {
            let mut depth = 0isize;
            let mut opened = false;
            let mut in_string = false;
            for (k, line) in lines.iter().enumerate().skip(j) {
                let text = if k == j { item } else { line };
                depth += brace_delta(text, &mut in_string);
                opened |= text.contains('{');
                end = k;
                if opened && depth <= 0 {
                    break;
                }
            }
        }
        i = end + 1;
    }
    count
}

// ---------------------------------------------------------------------------------------
// The rules, each a pure function of (path, text) returning its violations.

fn rule_layers(path: &str, text: &str) -> Vec<String> {
    let mut found = Vec::new();
    for (prefix, forbidden) in LAYERS {
        if path.starts_with(prefix) {
            let why = format!("in {prefix}: a layer imports only downward (see LAYERS)");
            found.extend(find_mentions(path, text, forbidden, &why));
        }
    }
    found
}

fn rule_clock(path: &str, text: &str) -> Vec<String> {
    if path == CLOCK_FILE || !path.starts_with("src/") {
        return Vec::new();
    }
    find_mentions(
        path,
        text,
        CLOCK_READS,
        "reads the OS clock: only src/runtime/clock.rs may (everything else takes `now`)",
    )
}

fn rule_glommio(path: &str, text: &str) -> Vec<String> {
    let allowed =
        GLOMMIO_FILES.contains(&path) || GLOMMIO_DIRS.iter().any(|dir| path.starts_with(dir));
    if allowed || !path.starts_with("src/") {
        return Vec::new();
    }
    find_mentions(
        path,
        text,
        &["glommio"],
        "only runtime/driver/, runtime/net/{mod,link,listen}.rs, wal/file/dma_disk.rs and the binary may use glommio",
    )
}

fn rule_module_doc(path: &str, text: &str) -> Vec<String> {
    if is_generated(path) || !path.starts_with("src/") {
        return Vec::new();
    }
    match text.lines().find(|line| !line.trim().is_empty()) {
        Some(first) if first.starts_with("//!") => Vec::new(),
        Some(_) | None => vec![format!(
            "{path}:1: does not start with a `//!` module doc (purpose, then invariants)"
        )],
    }
}

fn rule_no_unwrap(path: &str, text: &str) -> Vec<String> {
    if is_generated(path) || !path.starts_with("src/") {
        return Vec::new();
    }
    let code = strip_comments(text);
    before_cfg_test(&code)
        .filter(|(_, line)| line.contains(".unwrap()"))
        .map(|(n, _)| {
            format!("{path}:{n}: `.unwrap()` outside #[cfg(test)]: use `expect(\"why it cannot fail\")`")
        })
        .collect()
}

/// A `_` pattern (not part of an identifier, e.g. `Some(_)` is fine) followed by `=>`.
fn has_wildcard_arm(line: &str) -> bool {
    line.char_indices().any(|(i, c)| {
        c == '_' && !line[..i].ends_with(is_ident) && line[i + 1..].trim_start().starts_with("=>")
    })
}

fn rule_no_wildcard_arm(path: &str, text: &str) -> Vec<String> {
    if !path.starts_with("src/paxos/") {
        return Vec::new();
    }
    strip_comments(text)
        .lines()
        .enumerate()
        .filter(|(_, line)| has_wildcard_arm(line))
        .map(|(n, _)| {
            format!(
                "{path}:{}: `_ =>` arm in the protocol: list the cases so a new kind forces a review",
                n + 1
            )
        })
        .collect()
}

/// The non-test line allowance of `path`: its `FILE_LINES_OVER` count, else the limit.
fn file_lines_allowed(path: &str) -> usize {
    FILE_LINES_OVER
        .iter()
        .find(|(over, _)| *over == path)
        .map_or(FILE_LINES_MAX, |(_, count)| *count)
}

fn rule_file_length(path: &str, text: &str) -> Vec<String> {
    if is_generated(path) || !path.starts_with("src/") {
        return Vec::new();
    }
    let lines = non_test_lines(text);
    let allowed = file_lines_allowed(path);
    if lines <= allowed {
        return Vec::new();
    }
    let why = if allowed == FILE_LINES_MAX {
        format!("the limit is {FILE_LINES_MAX}: split the file by concern")
    } else {
        format!(
            "it is listed in FILE_LINES_OVER at {allowed} and may not grow: \
             split it (the limit is {FILE_LINES_MAX})"
        )
    };
    vec![format!("{path}:1: {lines} non-test lines; {why}")]
}

/// The `FILE_LINES_OVER` entries that no longer hold back anything: the file is gone,
/// or back within `FILE_LINES_MAX`, or smaller than its listed count (lower it, so the
/// allowance only ever shrinks). `sizes` maps each path to its non-test line count.
fn stale_allowances(over: &[(&str, usize)], sizes: &[(String, usize)]) -> Vec<String> {
    let mut stale = Vec::new();
    for (path, listed) in over {
        match sizes.iter().find(|(p, _)| p == path) {
            None => stale.push(format!("{path}: listed in FILE_LINES_OVER but not found: remove its line")),
            Some((_, lines)) if *lines <= FILE_LINES_MAX => stale.push(format!(
                "{path}: {lines} non-test lines, within {FILE_LINES_MAX}: remove its line from FILE_LINES_OVER"
            )),
            Some((_, lines)) if lines < listed => stale.push(format!(
                "{path}: {lines} non-test lines, listed at {listed}: lower its FILE_LINES_OVER count to {lines}"
            )),
            Some(_) => {}
        }
    }
    stale
}

// ---------------------------------------------------------------------------------------
// Tree tests.

// Goal: layers import only downward (paxos ← wal ← transport ← runtime ← api ← top).
// Method: for each LAYERS prefix, scan its files (comments stripped) for forbidden paths.
#[test]
fn layers_import_only_downward() {
    check_tree("layers", rule_layers);
}

// Goal: time enters only through `now` arguments, so everything below the driver runs
// on the simulator's virtual clock. Method: scan src/ for OS clock reads.
#[test]
fn only_clock_rs_reads_the_os_clock() {
    check_tree("os-clock", rule_clock);
}

// Goal: glommio stays in the driver folder, the links, the DMA disk and the binary, so
// the simulator can run everything else. Method: scan src/ for the word `glommio`
// outside those files.
#[test]
fn glommio_only_in_driver_files() {
    check_tree("glommio", rule_glommio);
}

// Goal: every module says what it is for and what it keeps true.
// Method: the first non-blank line of each hand-written .rs file under src/ is `//!`.
#[test]
fn every_module_has_a_doc() {
    check_tree("module-doc", rule_module_doc);
}

// Goal: no silent panics in shipped code; an impossible case says why it is impossible.
// Method: scan src/ (comments stripped) for `.unwrap()` before the first `#[cfg(test)]`.
#[test]
fn no_unwrap_outside_tests() {
    check_tree("no-unwrap", rule_no_unwrap);
}

// Goal: a new message kind or case forces a review of every protocol `match`.
// Method: scan src/paxos/ (comments stripped) for a `_ =>` arm.
#[test]
fn no_wildcard_arm_in_paxos() {
    check_tree("no-wildcard-arm", rule_no_wildcard_arm);
}

// Goal: no hand-written file grows past FILE_LINES_MAX non-test lines (today's
// offenders may not grow). Method: count lines outside #[cfg(test)] modules.
#[test]
fn files_within_line_limit() {
    check_tree("file-length", rule_file_length);
}

// Goal: FILE_LINES_OVER empties as the splits land, and its counts only go down.
// Method: compare each listed count with the file's non-test lines today.
#[test]
fn file_length_allowances_are_not_stale() {
    let sizes: Vec<(String, usize)> = sources()
        .into_iter()
        .map(|s| {
            let lines = non_test_lines(&s.text);
            (s.path, lines)
        })
        .collect();
    let stale = stale_allowances(FILE_LINES_OVER, &sizes);
    assert!(
        stale.is_empty(),
        "tidy: FILE_LINES_OVER is out of date:\n  {}",
        stale.join("\n  ")
    );
}

// ---------------------------------------------------------------------------------------
// Self-tests: each rule must fire on a synthetic violation and stay quiet on look-alikes.

// Goal: the layer rule catches a forbidden import and ignores comments and look-alikes.
// Method: run rule_layers on synthetic files at chosen paths.
#[test]
fn self_test_layers() {
    let bad = "//! doc\nuse crate::wal::Segment;\nfn f() { let t = std::time::Instant::now(); }\n";
    let found = rule_layers("src/paxos/x.rs", bad);
    assert!(found.iter().any(|v| v.contains("crate::wal")), "{found:?}");
    assert!(found.iter().any(|v| v.contains("std::time")), "{found:?}");
    assert!(found.iter().any(|v| v.contains("Instant")), "{found:?}");
    assert!(
        found.iter().all(|v| v.starts_with("src/paxos/x.rs:")),
        "{found:?}"
    );
    assert!(!rule_layers("src/runtime/x.rs", "use crate::api::Node;\n").is_empty());
    assert!(!rule_layers("src/paxos/x.rs", "async fn f() { g().await }\n").is_empty());
    // The same import is fine one layer up.
    assert!(rule_layers(
        "src/transport/x.rs",
        bad.replace("std::time::Instant::now()", "0").as_str()
    )
    .is_empty());
    // Comments, look-alike identifiers and string-embedded `//` are not violations.
    let fine = "//! No glommio, no Instant here.\n/* crate::wal */\n\
                fn f(i: Instance) -> &'static str { let _c = '\"'; \"http://x\" } // tokio\n\
                use crate::walrus;\n";
    assert_eq!(rule_layers("src/paxos/x.rs", fine), Vec::<String>::new());
    // A string literal that opens a comment marker does not hide code after it.
    let tricky = "fn f() { let _s = \"//\"; let _t = std::fs::read(\"a\"); }\n";
    assert!(!rule_layers("src/paxos/x.rs", tricky).is_empty());
}

// Goal: the clock rule fires outside clock.rs and not inside it.
// Method: run rule_clock on the same synthetic text at two paths.
#[test]
fn self_test_clock() {
    let text = "//! x\nfn now() -> u64 { std::time::Instant::now().elapsed().as_nanos() as u64 }\n";
    assert_eq!(rule_clock("src/runtime/shard.rs", text).len(), 1);
    assert!(rule_clock("src/runtime/clock.rs", text).is_empty());
    assert_eq!(
        rule_clock("src/sim/x.rs", "let t = SystemTime::now();\n").len(),
        1
    );
    assert_eq!(
        rule_clock("src/wal/x.rs", "unsafe { libc::clock_gettime(1, p) };\n").len(),
        1
    );
}

// Goal: the glommio rule fires outside the allowed files and not inside them.
// Method: run rule_glommio on one synthetic text at several paths.
#[test]
fn self_test_glommio() {
    let text = "//! x\nuse glommio::LocalExecutor;\n";
    assert_eq!(rule_glommio("src/runtime/shard.rs", text).len(), 1);
    assert_eq!(rule_glommio("src/wal/group_commit.rs", text).len(), 1);
    assert!(rule_glommio("src/runtime/driver/mod.rs", text).is_empty());
    assert!(rule_glommio("src/runtime/driver/wal_writer.rs", text).is_empty());
    assert_eq!(rule_glommio("src/runtime/driver.rs", text).len(), 1);
    assert!(rule_glommio("src/wal/file/dma_disk.rs", text).is_empty());
    assert!(rule_glommio("src/main.rs", text).is_empty());
    assert!(rule_glommio("src/bin/synod-bench.rs", text).is_empty());
}

// Goal: the module-doc rule fires on a file without `//!` and exempts generated code.
// Method: run rule_module_doc on synthetic files.
#[test]
fn self_test_module_doc() {
    assert_eq!(rule_module_doc("src/wal/x.rs", "use std::fs;\n").len(), 1);
    assert_eq!(
        rule_module_doc("src/wal/x.rs", "/// item doc\nfn f() {}\n").len(),
        1
    );
    assert_eq!(rule_module_doc("src/wal/x.rs", "").len(), 1);
    assert!(rule_module_doc("src/wal/x.rs", "\n//! The WAL.\n").is_empty());
    assert!(rule_module_doc("src/transport/generated/lib.rs", "use x;\n").is_empty());
}

// Goal: the unwrap rule fires before `#[cfg(test)]`, not after it, and not in comments.
// Method: run rule_no_unwrap on synthetic files.
#[test]
fn self_test_no_unwrap() {
    let text =
        "//! x\nfn f() { g().unwrap(); }\n#[cfg(test)]\nmod tests { fn t() { g().unwrap(); } }\n";
    let found = rule_no_unwrap("src/wal/x.rs", text);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].starts_with("src/wal/x.rs:2:"), "{found:?}");
    assert!(rule_no_unwrap("src/wal/x.rs", "//! never `.unwrap()`\n// x.unwrap()\n").is_empty());
    assert!(rule_no_unwrap("src/wal/x.rs", "fn f() { g().unwrap_or(0); }\n").is_empty());
}

// Goal: the wildcard-arm rule fires on `_ =>` (any spacing) in src/paxos/ only.
// Method: run rule_no_wildcard_arm on synthetic matches.
#[test]
fn self_test_no_wildcard_arm() {
    let bad = "//! x\nmatch m { A => 1, _ => 2 }\nmatch m {\n    _=> {}\n}\n";
    assert_eq!(rule_no_wildcard_arm("src/paxos/x.rs", bad).len(), 2);
    assert!(rule_no_wildcard_arm("src/wal/x.rs", bad).is_empty());
    let fine = "//! `_ =>` is banned here\nmatch o { Some(_) => 1, None => 2 }\nlet _x_ => ;\nmatch k { A | B => {} } // _ =>\n";
    assert_eq!(
        rule_no_wildcard_arm("src/paxos/x.rs", fine),
        Vec::<String>::new()
    );
}

// Goal: the file-length rule counts only non-test lines, fires past the limit or past a
// listed allowance, and exempts generated code. Method: synthetic files of chosen sizes.
#[test]
fn self_test_file_length() {
    let test_mod = "#[cfg(test)]\nmod tests {\n    fn t() { let _s = \"}}\"; let _c = '{'; }\n}\n";
    let text = format!("//! x\nfn f() {{}}\n{test_mod}fn g() {{}}\n");
    assert_eq!(non_test_lines(&text), 3);
    // A test module declared out of line, and a cfg(test) function (which counts).
    assert_eq!(non_test_lines("//! x\n#[cfg(test)]\nmod tests;\n"), 1);
    assert_eq!(non_test_lines("#[cfg(test)]\nfn helper() {\n}\n"), 3);
    assert_eq!(
        non_test_lines("#[cfg(test)]\n#[allow(dead_code)]\npub(crate) mod t {\n}\nfn f() {}\n"),
        1
    );
    let big = "fn f() {}\n".repeat(FILE_LINES_MAX + 1);
    let found = rule_file_length("src/wal/x.rs", &big);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].contains("1001 non-test lines"), "{found:?}");
    assert!(rule_file_length("src/wal/x.rs", &format!("{big}{test_mod}")).len() == 1);
    let at_limit = "fn f() {}\n".repeat(FILE_LINES_MAX);
    assert!(rule_file_length("src/wal/x.rs", &format!("{at_limit}{test_mod}")).is_empty());
    assert!(rule_file_length("src/transport/generated/x.rs", &big).is_empty());
    assert!(rule_file_length("tests/x.rs", &big).is_empty());
    // A listed offender may stay at its count but not grow, and a shrunken or vanished
    // one makes its line stale.
    let over = [
        ("src/a.rs", 1_200),
        ("src/b.rs", 1_100),
        ("src/c.rs", 1_050),
        ("src/d.rs", 1_010),
    ];
    let sizes = vec![
        ("src/a.rs".to_string(), 1_200),
        ("src/b.rs".to_string(), 900),
        ("src/c.rs".to_string(), 1_020),
    ];
    let stale = stale_allowances(&over, &sizes);
    assert_eq!(stale.len(), 3, "{stale:?}");
    assert!(stale[0].starts_with("src/b.rs: 900"), "{stale:?}");
    assert!(
        stale[1].contains("lower its FILE_LINES_OVER count to 1020"),
        "{stale:?}"
    );
    assert!(stale[2].starts_with("src/d.rs: listed"), "{stale:?}");
}

// Goal: comment stripping keeps line numbers, strings and char literals intact.
// Method: strip a synthetic text and compare.
#[test]
fn self_test_strip_comments() {
    let text = "a // b\n/* c\n d */ e\n\"// f\" '\"' g /* /* nested */ */ h\n'\\'' i // j\n";
    assert_eq!(
        strip_comments(text),
        "a \n\n e\n\"// f\" '\"' g  h\n'\\'' i \n"
    );
    assert_eq!(
        strip_comments("fn f<'a>(x: &'a str) {} // z"),
        "fn f<'a>(x: &'a str) {} "
    );
}

// ---------------------------------------------------------------------------------------
// The WAL's rooms: the pure modules of src/wal/ never import the I/O room (src/wal/file/,
// also reachable as `wal::store` and `wal::dma_disk`), and no wal modules import each
// other in a circle. `mod.rs` is the face (constants, re-exports) and test code is not
// part of the dependency order, so neither counts.

const WAL_DIR: &str = "src/wal/";
const WAL_IO_ROOM: &str = "src/wal/file/";
/// The names under which a wal module reaches the I/O room.
const WAL_IO_NAMES: &[&str] = &["file", "store", "dma_disk"];

/// The wal module (dependency node) a source file belongs to: `record` for
/// `src/wal/record.rs`, `file` for everything under `src/wal/file/`; `None` for files
/// outside `src/wal/`, for `src/wal/mod.rs` and for test files (`tests.rs`).
fn wal_module(path: &str) -> Option<&str> {
    let rest = path.strip_prefix(WAL_DIR)?;
    if rest == "mod.rs" || rest.ends_with("tests.rs") {
        return None;
    }
    let first = rest.split('/').next()?;
    Some(first.strip_suffix(".rs").unwrap_or(first))
}

/// The first path segment of each name after `prefix` in `line`: `a` for `prefix a::b`,
/// `a` and `c` for `prefix {a::b, c}`.
fn names_after(line: &str, prefix: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut from = 0;
    while let Some(pos) = line[from..].find(prefix) {
        let start = from + pos;
        from = start + prefix.len();
        if line[..start].ends_with(is_ident) || line[..start].ends_with("::") {
            continue;
        }
        let rest = &line[from..];
        let items: Vec<&str> = match rest.strip_prefix('{') {
            Some(inner) => inner.split('}').next().unwrap_or("").split(',').collect(),
            None => vec![rest],
        };
        for item in items {
            let name: String = item
                .trim_start()
                .chars()
                .take_while(|c| is_ident(*c))
                .collect();
            if !name.is_empty() {
                names.push(name);
            }
        }
    }
    names
}

/// The wal modules that the non-test code of `path` imports (other than its own), as
/// written: `crate::wal::X`, `super::X` in a file directly under `src/wal/`, and
/// `super::super::X` one folder down.
fn wal_imports(path: &str, text: &str) -> Vec<String> {
    let Some(module) = wal_module(path) else {
        return Vec::new();
    };
    let depth = path[WAL_DIR.len()..].matches('/').count();
    let parent = match depth {
        0 => Some("super::"),
        1 => Some("super::super::"),
        _ => None,
    };
    let code = strip_comments(text);
    let mut found = Vec::new();
    for (_, line) in before_cfg_test(&code) {
        let mut names = names_after(line, "crate::wal::");
        if let Some(parent) = parent {
            names.extend(
                names_after(line, parent)
                    .into_iter()
                    .filter(|n| n != "super"),
            );
        }
        for name in names {
            if name != module && !found.contains(&name) {
                found.push(name);
            }
        }
    }
    found
}

fn rule_wal_pure_no_io(path: &str, text: &str) -> Vec<String> {
    if wal_module(path).is_none() || path.starts_with(WAL_IO_ROOM) {
        return Vec::new();
    }
    wal_imports(path, text)
        .into_iter()
        .filter(|name| WAL_IO_NAMES.contains(&name.as_str()))
        .map(|name| {
            format!(
                "{path}: imports `{name}`: a pure wal module never imports the I/O room \
                 (src/wal/file/); move what both need below it"
            )
        })
        .collect()
}

/// Every circle among the wal modules of `sources` (path, text), as `a -> b -> a`; only
/// names that are wal modules of `sources` count (`BLOCK_SIZE`, `GroupCommit` re-exported
/// by the face are not modules), and the I/O names all mean the `file` room.
fn wal_circles(sources: &[(&str, &str)]) -> Vec<String> {
    use std::collections::{BTreeMap, BTreeSet};
    let modules: BTreeSet<&str> = sources.iter().filter_map(|(p, _)| wal_module(p)).collect();
    let mut edges: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for (path, text) in sources {
        let Some(from) = wal_module(path) else {
            continue;
        };
        let targets = edges.entry(from).or_default();
        for name in wal_imports(path, text) {
            let to = if WAL_IO_NAMES.contains(&name.as_str()) {
                "file"
            } else {
                name.as_str()
            };
            if let Some(to) = modules.get(to) {
                if *to != from {
                    targets.insert(*to);
                }
            }
        }
    }
    // A depth-first walk from each module; a circle is reported once, from its smallest
    // member.
    let mut circles = Vec::new();
    for start in &modules {
        let mut stack: Vec<(&str, Vec<&str>)> = vec![(start, vec![start])];
        let mut seen = BTreeSet::new();
        while let Some((at, trail)) = stack.pop() {
            for next in edges.get(at).into_iter().flatten() {
                if next == start {
                    let mut circle = trail.clone();
                    circle.push(start);
                    circles.push(circle.join(" -> "));
                } else if next > start && seen.insert(*next) {
                    let mut longer = trail.clone();
                    longer.push(next);
                    stack.push((next, longer));
                }
            }
        }
    }
    circles
}

// Goal: the pure wal modules stay pure: none imports the I/O room.
// Method: scan src/wal/ outside src/wal/file/ (test code excluded) for its names.
#[test]
fn wal_pure_modules_do_not_import_io() {
    check_tree("wal-pure", rule_wal_pure_no_io);
}

// Goal: the wal modules have a dependency order (no two import each other, directly or
// round a circle). Method: build the import graph of src/wal/ and look for circles.
#[test]
fn wal_modules_import_no_circle() {
    let all = sources();
    let wal: Vec<(&str, &str)> = all
        .iter()
        .filter(|s| s.path.starts_with(WAL_DIR))
        .map(|s| (s.path.as_str(), s.text.as_str()))
        .collect();
    assert!(
        wal.iter().any(|(p, _)| *p == "src/wal/record.rs"),
        "tidy: the walk of src/wal/ did not find record.rs"
    );
    let circles = wal_circles(&wal);
    assert!(
        circles.is_empty(),
        "tidy rule 'wal-circle': wal modules import each other in a circle:\n  {}",
        circles.join("\n  ")
    );
}

// Goal: the wal-pure rule fires on each way of reaching the I/O room, and not from inside
// it, not in test code, not in comments. Method: run it on synthetic files.
#[test]
fn self_test_wal_pure_no_io() {
    let bad = "//! x\nuse super::store::Store;\nuse crate::wal::file::recover_dir;\n\
               use crate::wal::{dma_disk::DmaDisk, BLOCK_SIZE};\n";
    let found = rule_wal_pure_no_io("src/wal/recovery.rs", bad);
    assert_eq!(found.len(), 3, "{found:?}");
    assert!(rule_wal_pure_no_io("src/wal/file/store.rs", bad).is_empty());
    assert!(rule_wal_pure_no_io("src/wal/mod.rs", bad).is_empty());
    assert!(rule_wal_pure_no_io("src/runtime/driver/wal_writer.rs", bad).is_empty());
    let fine = "//! Not `crate::wal::store`.\nuse super::record::Kind; // super::store\n\
                #[cfg(test)]\nmod tests { use crate::wal::store::Store; }\n";
    assert_eq!(
        rule_wal_pure_no_io("src/wal/index.rs", fine),
        Vec::<String>::new()
    );
}

// Goal: the circle check finds a circle of three and of two, and none in a tree.
// Method: synthetic wal files importing each other by every spelling.
#[test]
fn self_test_wal_circles() {
    let a = ("src/wal/a.rs", "use super::b::B;\n");
    let b = ("src/wal/b.rs", "use crate::wal::{c::C, BLOCK_SIZE};\n");
    let c = ("src/wal/c.rs", "use super::a;\n");
    let circles = wal_circles(&[a, b, c]);
    assert_eq!(circles, vec!["a -> b -> c -> a".to_string()]);
    // The I/O room is one node, whatever name reaches it.
    let io = (
        "src/wal/file/store.rs",
        "use crate::wal::a::A;\nuse super::config;\n",
    );
    let pure = ("src/wal/a.rs", "use crate::wal::store::Store;\n");
    assert_eq!(wal_circles(&[pure, io]), vec!["a -> file -> a".to_string()]);
    // Test code, the face and non-module names do not count.
    let c_fine = (
        "src/wal/c.rs",
        "use super::BLOCK_SIZE;\n#[cfg(test)]\nmod tests { use super::super::a; }\n",
    );
    let face = ("src/wal/mod.rs", "pub use a::A;\npub use c::C;\n");
    let tests = ("src/wal/c/tests.rs", "use crate::wal::a;\n");
    assert!(wal_circles(&[a, b, c_fine, face, tests]).is_empty());
}

// ---------------------------------------------------------------------------------------
// The lint wall (docs/testing.md): Cargo.toml's `[lints]` tables and clippy.toml's
// threshold. A lint of the wall may get stronger (warn -> deny -> forbid), never weaker
// or gone, and a "deny" lint has no local exception anywhere in the tree.

/// Every lint of the wall: (table, lint, weakest level it may have).
const LINTS_REQUIRED: &[(&str, &str, &str)] = &[
    ("lints.rust", "missing_docs", "warn"),
    ("lints.rust", "unsafe_op_in_unsafe_fn", "deny"),
    ("lints.rust", "unused_must_use", "deny"),
    ("lints.rust", "trivial_numeric_casts", "warn"),
    ("lints.clippy", "unwrap_used", "deny"),
    ("lints.clippy", "get_unwrap", "deny"),
    ("lints.clippy", "dbg_macro", "deny"),
    ("lints.clippy", "todo", "deny"),
    ("lints.clippy", "unimplemented", "deny"),
    ("lints.clippy", "too_many_lines", "warn"),
    ("lints.clippy", "allow_attributes_without_reason", "warn"),
    ("lints.clippy", "undocumented_unsafe_blocks", "warn"),
    ("lints.clippy", "unused_result_ok", "warn"),
    ("lints.clippy", "iter_over_hash_type", "warn"),
    ("lints.clippy", "debug_assert_with_mut_call", "warn"),
    ("lints.clippy", "cast_possible_wrap", "warn"),
    ("lints.clippy", "checked_conversions", "warn"),
    ("lints.clippy", "unchecked_time_subtraction", "warn"),
    ("lints.clippy", "mem_forget", "warn"),
    ("lints.clippy", "large_futures", "warn"),
];

/// Lint levels, weakest first.
const LINT_LEVELS: &[&str] = &["allow", "warn", "deny", "forbid"];

/// The highest `too-many-lines-threshold` clippy.toml may set: it may go down, not up.
const TOO_MANY_LINES_THRESHOLD_MAX: u64 = 120;

/// The (table, key, value) entries of a TOML text, enough for Cargo.toml and
/// clippy.toml: `[table]` headers, `key = value` lines (comments and lines without `=`
/// skipped), a dotted key folded into its table (`clippy.todo = ..` under `[lints]` is
/// table `lints.clippy`, key `todo`); values as written, one pair of quotes removed.
fn toml_entries(text: &str) -> Vec<(String, String, String)> {
    let mut table = String::new();
    let mut entries = Vec::new();
    for line in text.lines() {
        let mut code = String::new();
        let mut in_string = false;
        for c in line.chars() {
            match c {
                '"' => in_string = !in_string,
                '#' if !in_string => break,
                _ => {}
            }
            code.push(c);
        }
        let code = code.trim();
        if let Some(header) = code.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
            table = header.trim().to_string();
            continue;
        }
        let Some((key, value)) = code.split_once('=') else {
            continue;
        };
        let full = if table.is_empty() {
            key.trim().to_string()
        } else {
            format!("{table}.{}", key.trim())
        };
        let (entry_table, entry_key) = full.rsplit_once('.').unwrap_or(("", full.as_str()));
        let value = value.trim();
        let value = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(value);
        entries.push((
            entry_table.to_string(),
            entry_key.to_string(),
            value.to_string(),
        ));
    }
    entries
}

/// The level of a lint entry's value: `deny`, or `{ level = "deny", priority = 1 }`.
fn lint_level(value: &str) -> Option<&str> {
    let level = match value.strip_prefix('{') {
        Some(inline) => {
            let (_, after) = inline.split_once("level")?;
            let (_, after) = after.split_once('"')?;
            after.split_once('"')?.0
        }
        None => value,
    };
    LINT_LEVELS.iter().copied().find(|l| *l == level)
}

/// Violations of the wall in `cargo_toml` and `clippy_toml` (the texts of the files).
fn rule_lint_wall(cargo_toml: &str, clippy_toml: &str) -> Vec<String> {
    let strength = |level: &str| LINT_LEVELS.iter().position(|l| *l == level);
    let entries = toml_entries(cargo_toml);
    let mut found = Vec::new();
    for (table, lint, weakest) in LINTS_REQUIRED {
        let entry = entries.iter().find(|(t, k, _)| t == table && k == lint);
        match entry.map(|(_, _, value)| (value, lint_level(value))) {
            None => found.push(format!(
                "Cargo.toml: [{table}] {lint} is missing: the lint wall keeps it at \
                 \"{weakest}\" or stronger (docs/testing.md)"
            )),
            Some((value, None)) => found.push(format!(
                "Cargo.toml: [{table}] {lint} = {value}: not a lint level ({LINT_LEVELS:?})"
            )),
            Some((_, Some(level))) if strength(level) < strength(weakest) => {
                found.push(format!(
                    "Cargo.toml: [{table}] {lint} = \"{level}\" is weaker than the wall's \
                     \"{weakest}\""
                ));
            }
            Some(_) => {}
        }
    }
    let threshold = toml_entries(clippy_toml)
        .into_iter()
        .find(|(table, key, _)| table.is_empty() && key == "too-many-lines-threshold");
    match threshold.map(|(_, _, value)| value.parse::<u64>()) {
        None => found.push(
            "clippy.toml: too-many-lines-threshold is missing: the wall states its own".to_string(),
        ),
        Some(Err(e)) => found.push(format!("clippy.toml: too-many-lines-threshold: {e}")),
        Some(Ok(n)) if n > TOO_MANY_LINES_THRESHOLD_MAX => found.push(format!(
            "clippy.toml: too-many-lines-threshold = {n} is above \
             {TOO_MANY_LINES_THRESHOLD_MAX}: split the function, or give it an \
             #[expect(clippy::too_many_lines, reason = \"...\")]"
        )),
        Some(Ok(_)) => {}
    }
    found
}

/// The "deny" lints of the wall as an attribute names them (`clippy::todo`).
fn deny_lints() -> Vec<String> {
    LINTS_REQUIRED
        .iter()
        .filter(|(_, _, weakest)| *weakest == "deny")
        .map(|(table, lint, _)| match *table {
            "lints.clippy" => format!("clippy::{lint}"),
            _ => (*lint).to_string(),
        })
        .collect()
}

/// `text` with comments stripped and the contents of string literals blanked (line
/// structure kept): what is left is code alone.
fn blank_strings(text: &str) -> String {
    let chars: Vec<char> = strip_comments(text).chars().collect();
    let mut out = String::with_capacity(chars.len());
    let mut in_string = false;
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if in_string {
            if c == '\\' {
                out.push_str("  ");
                i += 2;
                continue;
            }
            in_string = c != '"';
            out.push(if c == '"' || c == '\n' { c } else { ' ' });
            i += 1;
            continue;
        }
        // A char literal holding a quote ('"' or '\'') is not a string's start.
        let len = match (c, next, chars.get(i + 2)) {
            ('\'', Some('\\'), _) => 4,
            ('\'', Some(_), Some('\'')) => 3,
            _ => 1,
        };
        if c == '"' {
            in_string = true;
        }
        out.extend(&chars[i..(i + len).min(chars.len())]);
        i += len;
    }
    out
}

/// Every `allow(..)`, `expect(..)` or `warn(..)` lint attribute (also inside
/// `cfg_attr`; comments and strings ignored) that names a "deny" lint of the wall.
/// flatc's output is another crate, outside the wall.
fn rule_no_deny_exceptions(path: &str, text: &str) -> Vec<String> {
    if is_generated(path) {
        return Vec::new();
    }
    let deny = deny_lints();
    let code = blank_strings(text);
    let mut found = Vec::new();
    for level in ["allow(", "expect(", "warn("] {
        let mut from = 0;
        while let Some(pos) = code[from..].find(level) {
            let start = from + pos;
            from = start + level.len();
            // `.expect(..)` is a call; `unwrap_or_warn(` is another name.
            if code[..start].ends_with(|c: char| is_ident(c) || c == '.') {
                continue;
            }
            let mut depth = 1;
            let inner_end = code[from..]
                .char_indices()
                .find(|(_, c)| {
                    match c {
                        '(' => depth += 1,
                        ')' => depth -= 1,
                        _ => {}
                    }
                    depth == 0
                })
                .map_or(code.len(), |(i, _)| from + i);
            let inner = &code[from..inner_end];
            for lint in &deny {
                if mentions(inner, lint) {
                    let line = code[..start].lines().count().max(1);
                    found.push(format!(
                        "{path}:{line}: `{level}{lint})`: \"deny\" in the lint wall means no \
                         exceptions"
                    ));
                }
            }
        }
    }
    found
}

// Goal: Cargo.toml keeps every lint of the wall at its level or stronger, and clippy.toml
// its function-length threshold. Method: read both files and check them.
#[test]
fn lint_wall_is_kept() {
    let read = |name: &str| {
        fs::read_to_string(root().join(name)).unwrap_or_else(|e| panic!("read {name}: {e}"))
    };
    let found = rule_lint_wall(&read("Cargo.toml"), &read("clippy.toml"));
    assert!(
        found.is_empty(),
        "tidy rule 'lint-wall' violated {} time(s):\n  {}",
        found.len(),
        found.join("\n  ")
    );
}

// Goal: a "deny" lint of the wall gets no local exception in any target.
// Method: scan src/, tests/, benches/ and examples/ (comments stripped) for an allow,
// expect or warn attribute naming one.
#[test]
fn no_exceptions_to_deny_lints() {
    let mut all = Vec::new();
    for dir in ["src", "tests", "benches", "examples"] {
        collect(&root().join(dir), &mut all);
    }
    assert!(
        all.iter().any(|s| s.path == "tests/tidy.rs"),
        "tidy: the walk of tests/ did not find tidy.rs"
    );
    let found: Vec<String> = all
        .iter()
        .flat_map(|s| rule_no_deny_exceptions(&s.path, &s.text))
        .collect();
    assert!(
        found.is_empty(),
        "tidy rule 'no-deny-exceptions' violated {} time(s):\n  {}",
        found.len(),
        found.join("\n  ")
    );
}

// Goal: the lint-wall rule fires on a missing table, a missing, weakened, misplaced or
// commented-out lint and a raised or missing threshold, and accepts the stronger and
// dotted spellings. Method: run rule_lint_wall on synthetic files.
#[test]
fn self_test_lint_wall() {
    let wall = |rust: &str, clippy: &str| {
        let mut text = format!("[package]\nname = \"x\"\n\n[lints.rust]\n{rust}");
        for (table, lint, level) in LINTS_REQUIRED {
            if *table == "lints.rust" {
                text.push_str(&format!("{lint} = \"{level}\" # why\n"));
            }
        }
        text.push_str(&format!("\n[lints.clippy]\n{clippy}"));
        for (table, lint, level) in LINTS_REQUIRED {
            if *table == "lints.clippy" && !clippy.contains(&format!("{lint} ")) {
                text.push_str(&format!("{lint} = \"{level}\"\n"));
            }
        }
        text
    };
    let clippy_ok = "allow-unwrap-in-tests = true\ntoo-many-lines-threshold = 120\n";
    assert_eq!(
        rule_lint_wall(&wall("", ""), clippy_ok),
        Vec::<String>::new()
    );
    // Stronger levels and the inline-table form pass.
    let stronger = wall("", "unwrap_used = { level = \"forbid\", priority = 1 }\n");
    assert_eq!(rule_lint_wall(&stronger, clippy_ok), Vec::<String>::new());
    assert!(rule_lint_wall(&wall("", ""), "too-many-lines-threshold = 80\n").is_empty());

    // No [lints] at all: every lint is missing.
    let none = rule_lint_wall("[package]\nname = \"x\"\n", clippy_ok);
    assert_eq!(none.len(), LINTS_REQUIRED.len(), "{none:?}");
    assert!(none[0].contains("missing_docs is missing"), "{none:?}");
    // Weakened, by either spelling.
    for weak in [
        "unwrap_used = \"warn\"\n",
        "unwrap_used = { level = \"allow\" }\n",
    ] {
        let found = rule_lint_wall(&wall("", weak), clippy_ok);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].contains("unwrap_used = \"") && found[0].contains("weaker"));
    }
    // Not a level.
    let found = rule_lint_wall(&wall("", "todo = \"deni\"\n"), clippy_ok);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].contains("not a lint level"), "{found:?}");
    // In the wrong table, or commented out: missing where it belongs.
    let misplaced = wall("", "").replace("\nunwrap_used = \"deny\"\n", "\n");
    let misplaced = misplaced.replace("[lints.rust]\n", "[lints.rust]\nunwrap_used = \"deny\"\n");
    let found = rule_lint_wall(&misplaced, clippy_ok);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(
        found[0].contains("[lints.clippy] unwrap_used is missing"),
        "{found:?}"
    );
    let commented = wall("", "").replace("\ntodo = \"deny\"\n", "\n# todo = \"deny\"\n");
    assert_eq!(rule_lint_wall(&commented, clippy_ok).len(), 1);
    // Dotted keys under [lints] count as their table.
    let dotted: String = wall("", "")
        .replace(
            "[lints.rust]\n",
            "[lints]\nrust.missing_docs = \"warn\"\n[lints.rust]\n",
        )
        .replace("\nmissing_docs = \"warn\" # why\n", "\n");
    assert_eq!(rule_lint_wall(&dotted, clippy_ok), Vec::<String>::new());
    // The threshold: raised, missing, not a number.
    let raised = rule_lint_wall(&wall("", ""), "too-many-lines-threshold = 121\n");
    assert_eq!(raised.len(), 1, "{raised:?}");
    assert!(raised[0].contains("= 121 is above 120"), "{raised:?}");
    let missing = rule_lint_wall(&wall("", ""), "allow-dbg-in-tests = true\n");
    assert_eq!(missing.len(), 1, "{missing:?}");
    assert_eq!(
        rule_lint_wall(&wall("", ""), "too-many-lines-threshold = \"x\"\n").len(),
        1
    );
}

// Goal: the deny-exception rule fires on allow, expect and warn of a "deny" lint (one
// line or several, inside cfg_attr), and not on other lints, `.expect(..)` calls or
// comments. Method: run rule_no_deny_exceptions on synthetic files; the attributes are
// assembled at run time so that this file does not hold one itself.
#[test]
fn self_test_no_deny_exceptions() {
    let attr = |level: &str, lints: &str| format!("#[{level}({lints})]\nfn f() {{}}\n");
    let bad = [
        attr("allow", "clippy::unwrap_used"),
        format!(
            "//! x\n{}",
            attr("expect", "dead_code, clippy::todo, reason = \"(x)\"")
        ),
        attr("warn", "unused_must_use"),
        format!(
            "#![{}(\n    clippy::dbg_macro,\n    reason = \"\"\n)]\n",
            "allow"
        ),
        format!("#[cfg_attr(test, {}(clippy::get_unwrap))]\n", "allow"),
    ];
    for text in &bad {
        let found = rule_no_deny_exceptions("src/x.rs", text);
        assert_eq!(found.len(), 1, "{text}: {found:?}");
    }
    let found = rule_no_deny_exceptions("src/x.rs", &bad[1]);
    assert!(
        found[0].starts_with("src/x.rs:2: `expect(clippy::todo)`"),
        "{found:?}"
    );
    let fine = [
        attr(
            "allow",
            "dead_code, reason = \"clippy::unwrap_used is not here\"",
        ),
        attr("expect", "clippy::too_many_lines"),
        attr("allow", "clippy::unwrap_used_extra"),
        "fn f() { g().expect(\"clippy::unwrap_used\"); x.unwrap_or_warn(clippy::todo) }\n"
            .to_string(),
        format!("// #[{}(clippy::todo)]\n", "allow"),
    ];
    for text in &fine {
        assert_eq!(
            rule_no_deny_exceptions("src/x.rs", text),
            Vec::<String>::new(),
            "{text}"
        );
    }
}
