//! The host's own Debian mirror, read from its apt sources, so that vzrun never carries a
//! package registry's address of its own: a template is built from the mirror the host
//! already trusts (or one the administrator names).

use std::path::Path;

/// The URI of the first enabled `deb` source whose suites include a plain release
/// (not `-security`, `-updates` or `-backports`) with the `main` component, from
/// /etc/apt/sources.list, then the `.list` and deb822 `.sources` files beside it.
pub fn debian_mirror() -> Option<String> {
    let mut files = vec![Path::new("/etc/apt/sources.list").to_path_buf()];
    if let Ok(rd) = std::fs::read_dir("/etc/apt/sources.list.d") {
        let mut more: Vec<_> = rd.flatten().map(|e| e.path()).collect();
        more.sort();
        files.extend(more);
    }
    files.iter().find_map(|f| {
        let text = std::fs::read_to_string(f).ok()?;
        match f.extension().and_then(|e| e.to_str()) {
            Some("sources") => from_deb822(&text),
            Some("list") => from_one_line(&text),
            _ if f.ends_with("sources.list") => from_one_line(&text),
            _ => None,
        }
    })
}

fn plain_release(suite: &str) -> bool {
    !suite.is_empty() && !suite.contains('-') && !suite.contains('/')
}

/// `deb [options] URI SUITE COMPONENT…` lines.
fn from_one_line(text: &str) -> Option<String> {
    text.lines().find_map(|l| {
        let l = l.trim();
        let rest = l.strip_prefix("deb ")?;
        let rest = match rest.trim_start().strip_prefix('[') {
            Some(r) => r.split_once(']')?.1,
            None => rest,
        };
        let mut words = rest.split_whitespace();
        let (uri, suite) = (words.next()?, words.next()?);
        (plain_release(suite) && words.any(|c| c == "main")).then(|| uri.to_string())
    })
}

/// deb822 stanzas: `Types:`, `URIs:`, `Suites:`, `Components:`, `Enabled:`.
fn from_deb822(text: &str) -> Option<String> {
    text.split("\n\n").find_map(|stanza| {
        let field = |name: &str| {
            stanza.lines().find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.trim()
                    .eq_ignore_ascii_case(name)
                    .then(|| v.trim().to_string())
            })
        };
        if !field("Types")?.split_whitespace().any(|t| t == "deb") {
            return None;
        }
        if field("Enabled").is_some_and(|v| v.eq_ignore_ascii_case("no")) {
            return None;
        }
        let suites = field("Suites")?;
        let components = field("Components").unwrap_or_default();
        (suites.split_whitespace().any(plain_release)
            && components.split_whitespace().any(|c| c == "main"))
        .then(|| field("URIs"))
        .flatten()
        .and_then(|u| u.split_whitespace().next().map(str::to_string))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deb822_takes_the_release_stanza() {
        let text = "Types: deb\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\nComponents: main\n\n\
                    Types: deb\n# comment\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\nComponents: main\n";
        assert_eq!(
            from_deb822(text).as_deref(),
            Some("http://mirror.example/debian")
        );
        assert_eq!(
            from_deb822("Types: deb-src\nURIs: x\nSuites: bookworm\nComponents: main\n"),
            None
        );
    }

    #[test]
    fn one_line_sources() {
        let text =
            "# x\ndeb [signed-by=/k.gpg] http://mirror.example/debian bookworm main contrib\n";
        assert_eq!(
            from_one_line(text).as_deref(),
            Some("http://mirror.example/debian")
        );
        assert_eq!(
            from_one_line("deb http://m/d bookworm-updates main\n"),
            None
        );
    }
}
