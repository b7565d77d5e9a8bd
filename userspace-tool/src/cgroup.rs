//! Cgroup (v2) ids and the paths they stand for, and the container a path names.
//!
//! The module gives a process's cgroup as an id: the inode number of the cgroup's directory under
//! the cgroup2 mount (`/sys/fs/cgroup`). [`Cgroups`] maps ids back to paths by walking that tree
//! (once, and again, at most once a second, when an id it does not know turns up: a container
//! started since), and [`cgroup_id`] goes the other way for `--cgroup PATH`. A cgroup's name is
//! chosen by whoever made it (a container runtime, a user with a delegated subtree), so paths are
//! bytes, shown through [`crate::escape`] like every name from outside.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Where cgroup2 is mounted unless `/proc/self/mountinfo` says otherwise.
pub const DEFAULT_ROOT: &str = "/sys/fs/cgroup";

/// How often an unknown id may make the tree be walked again.
const REWALK: Duration = Duration::from_secs(1);

/// The first cgroup2 mount of this mount namespace, from `/proc/self/mountinfo`; the default
/// when there is none to be found.
pub fn root() -> PathBuf {
    std::fs::read("/proc/self/mountinfo")
        .ok()
        .and_then(|m| cgroup2_mount(&m))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_ROOT))
}

/// The mount point of the first cgroup2 line of a mountinfo text.
fn cgroup2_mount(mountinfo: &[u8]) -> Option<PathBuf> {
    mountinfo.split(|&b| b == b'\n').find_map(|line| {
        // "ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTIONS [TAGS...] - FSTYPE SOURCE SUPER"
        let fields: Vec<&[u8]> = line.split(|&b| b == b' ').collect();
        let dash = fields.iter().position(|f| *f == b"-")?;
        (fields.get(dash + 1) == Some(&&b"cgroup2"[..]) && fields.len() > 4)
            .then(|| PathBuf::from(OsStr::from_bytes(&unescape_octal(fields[4]))))
    })
}

/// mountinfo writes space, tab, newline and backslash in paths as `\NNN` (octal).
fn unescape_octal(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'\\' && i + 4 <= s.len() {
            let oct = &s[i + 1..i + 4];
            if oct.iter().all(|c| (b'0'..=b'7').contains(c)) {
                out.push((oct[0] - b'0') * 64 + (oct[1] - b'0') * 8 + (oct[2] - b'0'));
                i += 4;
                continue;
            }
        }
        out.push(s[i]);
        i += 1;
    }
    out
}

/// The id of a cgroup named on the command line: a number is the id itself; anything else is a
/// path, under `root` (`/system.slice/x.service`, or `system.slice/x.service`) or a directory of
/// the cgroup tree given whole (`/sys/fs/cgroup/system.slice/x.service`). The error says why.
pub fn cgroup_id(root: &Path, arg: &OsStr) -> Result<u64, String> {
    if let Some(id) = arg.to_str().and_then(|s| s.parse::<u64>().ok()) {
        return Ok(id);
    }
    let given = Path::new(arg);
    let dir = if given.starts_with(root) {
        given.to_path_buf()
    } else {
        let rel = arg.as_bytes();
        let rel = &rel[rel.iter().take_while(|&&b| b == b'/').count()..];
        root.join(OsStr::from_bytes(rel))
    };
    let md = std::fs::metadata(&dir).map_err(|e| {
        format!(
            "{}: {e} (a cgroup id, or a path under {})",
            crate::escape::path(&dir),
            crate::escape::path(root)
        )
    })?;
    if !md.is_dir() {
        return Err(format!(
            "{} is not a cgroup directory",
            crate::escape::path(&dir)
        ));
    }
    Ok(md.ino())
}

/// Ids to paths, from a walk of the cgroup tree.
#[derive(Debug)]
pub struct Cgroups {
    root: PathBuf,
    paths: HashMap<u64, Vec<u8>>,
    walked: Option<Instant>,
}

impl Cgroups {
    /// A map of the tree at `root`, walked when first asked.
    pub fn new(root: PathBuf) -> Self {
        Cgroups {
            root,
            paths: HashMap::new(),
            walked: None,
        }
    }

    /// Makes sure `id` is known if it exists: walks the tree again if it is not, unless it was
    /// walked less than a second ago.
    pub fn learn(&mut self, id: u64) {
        if id == 0 || self.paths.contains_key(&id) {
            return;
        }
        if self.walked.is_some_and(|t| t.elapsed() < REWALK) {
            return;
        }
        self.walk();
    }

    fn walk(&mut self) {
        self.walked = Some(Instant::now());
        self.paths.clear();
        let Ok(md) = std::fs::metadata(&self.root) else {
            return;
        };
        self.paths.insert(md.ino(), b"/".to_vec());
        let mut stack = vec![(self.root.clone(), Vec::new())];
        while let Some((dir, rel)) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for e in entries.flatten() {
                // Only directories are cgroups; symbolic links are not followed.
                let Ok(md) = e.metadata() else { continue };
                if !md.is_dir() {
                    continue;
                }
                let mut p = rel.clone();
                p.push(b'/');
                p.extend_from_slice(e.file_name().as_bytes());
                self.paths.insert(md.ino(), p.clone());
                stack.push((e.path(), p));
            }
        }
    }

    /// A map that knows these paths and walks nothing (for tests).
    #[cfg(test)]
    pub fn from_paths(paths: &[(u64, &[u8])]) -> Self {
        Cgroups {
            root: PathBuf::from("/nonexistent"),
            paths: paths.iter().map(|(id, p)| (*id, p.to_vec())).collect(),
            walked: Some(Instant::now() + Duration::from_secs(3600)),
        }
    }

    /// The path of cgroup `id` under the root (`/` for the root itself), if it was found.
    pub fn path(&self, id: u64) -> Option<&[u8]> {
        self.paths.get(&id).map(Vec::as_slice)
    }
}

/// A container, as its runtime names its cgroup.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Container {
    /// `docker`, `containerd`, `cri-o`, `podman` or `nspawn`.
    pub runtime: &'static str,
    /// The container's id (64 hex digits), or an nspawn machine's name.
    pub id: Vec<u8>,
}

fn is_hex64(s: &[u8]) -> bool {
    s.len() == 64 && s.iter().all(u8::is_ascii_hexdigit)
}

/// systemd escapes a unit name's `-` and other bytes as `\xNN`.
fn unescape_unit(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        if s[i..].starts_with(b"\\x") && i + 4 <= s.len() {
            if let Ok(b) = u8::from_str_radix(&String::from_utf8_lossy(&s[i + 2..i + 4]), 16) {
                out.push(b);
                i += 4;
                continue;
            }
        }
        out.push(s[i]);
        i += 1;
    }
    out
}

/// The container a cgroup path names, where it is one of the layouts runtimes use, looked for
/// from the innermost directory out:
///
/// - Docker: `docker-ID.scope` (systemd driver) or `docker/ID` (cgroupfs driver);
/// - containerd, and Kubernetes on it: `cri-containerd-ID.scope`, or a `kubepods` path whose
///   last directory is the ID;
/// - CRI-O: `crio-ID.scope`; podman: `libpod-ID.scope`;
/// - systemd-nspawn: `machine.slice/systemd-nspawn@NAME.service` or
///   `machine.slice/machine-NAME.scope` (NAME unescaped from systemd's `\x2d`).
pub fn container(path: &[u8]) -> Option<Container> {
    let parts: Vec<&[u8]> = path
        .split(|&b| b == b'/')
        .filter(|p| !p.is_empty())
        .collect();
    for (i, part) in parts.iter().enumerate().rev() {
        for (prefix, runtime) in [
            (&b"docker-"[..], "docker"),
            (b"cri-containerd-", "containerd"),
            (b"crio-", "cri-o"),
            (b"libpod-", "podman"),
        ] {
            if let Some(id) = part
                .strip_prefix(prefix)
                .and_then(|r| r.strip_suffix(b".scope"))
            {
                if is_hex64(id) {
                    return Some(Container {
                        runtime,
                        id: id.to_vec(),
                    });
                }
            }
        }
        let parent = i.checked_sub(1).map(|p| parts[p]);
        if is_hex64(part) {
            if parent == Some(b"docker") {
                return Some(Container {
                    runtime: "docker",
                    id: part.to_vec(),
                });
            }
            if parts[..i].iter().any(|p| p.starts_with(b"kubepods")) {
                return Some(Container {
                    runtime: "containerd",
                    id: part.to_vec(),
                });
            }
        }
        if parent == Some(b"machine.slice") {
            let name = part
                .strip_prefix(b"systemd-nspawn@")
                .and_then(|r| r.strip_suffix(b".service"))
                .or_else(|| {
                    part.strip_prefix(b"machine-")
                        .and_then(|r| r.strip_suffix(b".scope"))
                });
            if let Some(n) = name.filter(|n| !n.is_empty()) {
                return Some(Container {
                    runtime: "nspawn",
                    id: unescape_unit(n),
                });
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn c(path: &str) -> Option<(&'static str, String)> {
        container(path.as_bytes()).map(|c| (c.runtime, String::from_utf8(c.id).unwrap()))
    }

    #[test]
    fn containers_from_their_runtimes_layouts() {
        let docker = Some(("docker", ID.to_owned()));
        assert_eq!(c(&format!("/system.slice/docker-{ID}.scope")), docker);
        assert_eq!(c(&format!("/docker/{ID}")), docker);
        // A cgroup a container made inside its own (systemd in a container).
        assert_eq!(c(&format!("/docker/{ID}/init.scope")), docker);
        assert_eq!(
            c(&format!(
                "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1234_5678.slice/cri-containerd-{ID}.scope"
            )),
            Some(("containerd", ID.to_owned()))
        );
        assert_eq!(
            c(&format!("/kubepods/besteffort/pod1234/{ID}")),
            Some(("containerd", ID.to_owned()))
        );
        assert_eq!(
            c(&format!("/machine.slice/libpod-{ID}.scope/container")),
            Some(("podman", ID.to_owned()))
        );
        assert_eq!(
            c(&format!("/kubepods.slice/crio-{ID}.scope")),
            Some(("cri-o", ID.to_owned()))
        );
        assert_eq!(
            c("/machine.slice/systemd-nspawn@web.service/payload"),
            Some(("nspawn", "web".to_owned()))
        );
        assert_eq!(
            c("/machine.slice/machine-my\\x2dbox.scope"),
            Some(("nspawn", "my-box".to_owned()))
        );
    }

    #[test]
    fn other_paths_name_no_container() {
        for p in [
            "/",
            "/init.scope",
            "/user.slice/user-1000.slice/session-3.scope",
            "/system.slice/docker.service",
            "/system.slice/docker-0123.scope",
            &format!("/system.slice/docker-{ID}.service"),
            &format!("/other/{ID}"),
            "/machine.slice",
            "/machine.slice/machine-.scope",
            "/machine.slice/other.scope",
        ] {
            assert_eq!(c(p), None, "{p}");
        }
    }

    #[test]
    fn the_cgroup2_mount_is_found_in_mountinfo() {
        let mi = b"22 1 0:21 / /proc rw - proc proc rw\n\
            30 25 0:26 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n";
        assert_eq!(cgroup2_mount(mi), Some(PathBuf::from("/sys/fs/cgroup")));
        let odd = b"30 25 0:26 / /mnt/cg\\040v2 rw shared:9 - cgroup2 none rw\n";
        assert_eq!(cgroup2_mount(odd), Some(PathBuf::from("/mnt/cg v2")));
        assert_eq!(cgroup2_mount(b"1 0 0:1 / / rw - ext4 /dev/vda rw\n"), None);
    }

    #[test]
    fn ids_and_paths_both_ways() {
        let root = std::env::temp_dir().join(format!("tcplog-cg-{}", std::process::id()));
        let leaf = root.join("a.slice").join("b\nc.scope");
        std::fs::create_dir_all(&leaf).unwrap();
        std::fs::write(root.join("cgroup.procs"), b"").unwrap();
        let ino = std::fs::metadata(&leaf).unwrap().ino();
        let rel = OsStr::from_bytes(b"/a.slice/b\nc.scope");
        assert_eq!(cgroup_id(&root, rel), Ok(ino));
        assert_eq!(
            cgroup_id(&root, OsStr::from_bytes(b"a.slice/b\nc.scope")),
            Ok(ino)
        );
        assert_eq!(cgroup_id(&root, leaf.as_os_str()), Ok(ino));
        assert_eq!(cgroup_id(&root, OsStr::new("4242")), Ok(4242));
        let e = cgroup_id(&root, OsStr::new("/nope")).unwrap_err();
        assert!(e.contains("/nope") && e.contains("a cgroup id"), "{e}");
        let e = cgroup_id(&root, OsStr::new("cgroup.procs")).unwrap_err();
        assert!(e.contains("not a cgroup directory"), "{e}");

        let mut m = Cgroups::new(root.clone());
        m.learn(ino);
        assert_eq!(m.path(ino), Some(&b"/a.slice/b\nc.scope"[..]));
        let top = std::fs::metadata(&root).unwrap().ino();
        assert_eq!(m.path(top), Some(&b"/"[..]));
        // A cgroup made since the walk is found by the next unknown id, a second later.
        let late = root.join("late");
        std::fs::create_dir(&late).unwrap();
        let late_ino = std::fs::metadata(&late).unwrap().ino();
        m.learn(late_ino);
        assert_eq!(m.path(late_ino), None, "walked less than a second ago");
        m.walked = Some(Instant::now() - REWALK);
        m.learn(late_ino);
        assert_eq!(m.path(late_ino), Some(&b"/late"[..]));
        std::fs::remove_dir_all(&root).unwrap();
    }
}
