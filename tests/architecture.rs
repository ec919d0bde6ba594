//! `ARCHITECTURE.md` matches the code: its code map names every module in `src/` and no
//! module that is gone, and the dependency direction it states holds (a module imports only
//! modules listed below it in the map).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The code map's modules, top to bottom (`cli/` → `cli`, `fold.rs` → `fold`).
fn code_map() -> Vec<String> {
    let text = std::fs::read_to_string(root().join("ARCHITECTURE.md")).unwrap();
    let start = text.find("## Code map").expect("a code map section");
    let end = text[start..]
        .find("\n## ")
        .map_or(text.len(), |e| start + e);
    text[start..end]
        .lines()
        .filter(|l| l.starts_with("| `"))
        .map(|l| {
            let name = l.split('`').nth(1).unwrap();
            name.trim_end_matches(".rs")
                .trim_end_matches('/')
                .to_string()
        })
        .collect()
}

/// Every top-level module of the crate and the crate modules it imports.
fn modules() -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let src = root().join("src");
    let mut stack = vec![src.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let rel = path.strip_prefix(&src).unwrap();
            let top = rel
                .components()
                .next()
                .unwrap()
                .as_os_str()
                .to_string_lossy()
                .trim_end_matches(".rs")
                .to_string();
            if top == "lib" {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            let deps = out.entry(top.clone()).or_default();
            for (i, _) in text.match_indices("crate::") {
                let name: String = text[i + 7..]
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() && name != top {
                    deps.insert(name);
                }
            }
        }
    }
    out
}

#[test]
fn the_code_map_names_every_module_and_only_those() {
    let listed: BTreeSet<String> = code_map().into_iter().collect();
    let present: BTreeSet<String> = modules().into_keys().collect();
    let missing: Vec<_> = present.difference(&listed).collect();
    let stale: Vec<_> = listed.difference(&present).collect();
    assert!(
        missing.is_empty(),
        "modules missing from ARCHITECTURE.md: {missing:?}"
    );
    assert!(
        stale.is_empty(),
        "ARCHITECTURE.md names modules that do not exist: {stale:?}"
    );
}

#[test]
fn dependencies_point_down_the_code_map() {
    let order = code_map();
    let rank = |m: &str| order.iter().position(|x| x == m);
    for (module, deps) in modules() {
        let me = rank(&module).unwrap_or_else(|| panic!("{module} not in the code map"));
        for dep in deps {
            let Some(r) = rank(&dep) else { continue };
            assert!(
                r > me,
                "`{module}` imports `{dep}`, which ARCHITECTURE.md lists above it"
            );
        }
    }
}
