//! The final filesystem of an image: its layers' entries applied in manifest order, with OCI
//! whiteouts, as an overlay mount shows them to the container.
//!
//! Rules:
//! - A layer is parsed once into [`Op`]s; a layer the manifest lists several times is applied
//!   at each of its places (its whiteouts may hide what a layer in between added).
//! - `.wh.<name>` removes `<name>` (and what is below it) from the layers below and from what this
//!   layer put there before it; `.wh..wh..opq` hides everything below the directory that earlier
//!   layers put there, keeping this layer's own entries whatever their order in the tar.
//! - A non-directory replaces a directory with everything below it; a directory over a directory
//!   keeps the children.
//! - Ambiguity fails closed: an entry written beneath a symbolic link or a non-directory (runtimes
//!   disagree on where it lands), a whiteout of `""`, `.` or `..`, a hard link to nothing.
//! - Paths are raw bytes (not all names are UTF-8), cleaned as containerd cleans them: `.` and
//!   empty components dropped, `..` stops at the root.
//!
//! Cost: every operation is a walk along its path in a tree of hash maps (randomly keyed, so
//! crafted names cannot collide them), and an opaque directory visits each node of this layer at
//! most once; no operation scans the whole filesystem, so whiteouts stay linear.

use std::collections::HashMap;
use std::rc::Rc;

use super::limits::ScanError;
use super::packages::Package;

/// What the scanner keeps of a file whose content it parsed.
#[derive(Debug, Clone, PartialEq)]
pub enum Captured {
    /// `/etc/passwd`: (name, uid) of each line, in order, with runc's parsing (an unparsable uid is 0).
    Passwd(Vec<(Vec<u8>, i64)>),
    /// A package database: what it lists.
    Packages(Vec<Package>),
    /// `os-release`: the distribution it names, if it names one.
    OsRelease(Option<super::packages::Distro>),
}

/// What an entry puts into the filesystem.
#[derive(Debug, Clone)]
pub enum PutKind {
    File(Option<Rc<Captured>>),
    Dir,
    Symlink(Vec<u8>),
    HardLink(Vec<u8>),
    /// Devices and FIFOs.
    Other,
}

/// One effect of a layer, in tar order.
#[derive(Debug, Clone)]
pub enum Op {
    Put { path: Vec<Vec<u8>>, kind: PutKind, mode: u32 },
    Whiteout { dir: Vec<Vec<u8>>, name: Vec<u8> },
    Opaque { dir: Vec<Vec<u8>> },
}

/// Splits and cleans a tar path into components.
pub fn clean(path: &[u8]) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = Vec::new();
    for part in path.split(|&b| b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => {
                out.pop();
            }
            name => out.push(name.to_vec()),
        }
    }
    out
}

/// The op a cleaned tar entry stands for: a whiteout, an opaque marker, or a put.
pub fn op_for(path: Vec<Vec<u8>>, kind: PutKind, mode: u32) -> Result<Op, ScanError> {
    let Some((name, dir)) = path.split_last() else {
        return Ok(Op::Put { path, kind, mode });
    };
    if name.as_slice() == b".wh..wh..opq" {
        return Ok(Op::Opaque { dir: dir.to_vec() });
    }
    if name.starts_with(b".wh..wh.") {
        // AUFS metadata (`.wh..wh.plnk`, ...): not whiteouts; containerd skips them.
        return Ok(Op::Put { path, kind, mode });
    }
    if let Some(hidden) = name.strip_prefix(b".wh.") {
        if matches!(hidden, b"" | b"." | b"..") {
            return Err(ScanError::unreadable(format!(
                "a whiteout of {:?} (it would remove a directory, not a name in it)",
                String::from_utf8_lossy(name)
            )));
        }
        return Ok(Op::Whiteout { dir: dir.to_vec(), name: hidden.to_vec() });
    }
    Ok(Op::Put { path, kind, mode })
}

#[derive(Debug)]
enum Kind {
    Dir { children: HashMap<Box<[u8]>, Node>, opaque_pass: u32 },
    File(Option<Rc<Captured>>),
    Symlink(Box<[u8]>),
    Other,
}

#[derive(Debug)]
struct Node {
    kind: Kind,
    mode: u32,
    /// The layer occurrence that put or last passed through it (for opaque directories).
    occurrence: u32,
    /// Index of the layer (its digest) that put it, for findings.
    layer: u32,
}

impl Node {
    fn dir(mode: u32, occurrence: u32, layer: u32) -> Node {
        Node { kind: Kind::Dir { children: HashMap::new(), opaque_pass: 0 }, mode, occurrence, layer }
    }
}

/// A file of the final filesystem, as [`Tree::walk`] reports it.
pub struct Visited<'a> {
    pub path: &'a [u8],
    pub is_dir: bool,
    pub is_file: bool,
    pub mode: u32,
    pub layer: u32,
    pub captured: Option<&'a Captured>,
}

/// What a lookup through symbolic links found.
#[derive(Debug, PartialEq)]
pub enum Lookup<'a> {
    Missing,
    /// A regular file, and what the scanner parsed of it, if it did.
    File(Option<&'a Captured>),
    /// A directory, a device, or a chain of links too long (40, as Linux) to follow.
    NotAFile,
}

/// The filesystem being built.
#[derive(Debug)]
pub struct Tree {
    root: Node,
    occurrence: u32,
    /// Nodes visited so far: the measure of the work done, which stays linear in the input.
    steps: u64,
    /// Hard links whose header gave their inode setuid, setgid or world-write bits it lacked: the
    /// mode reaches every name of the inode, earlier links included, which the tree (one node per
    /// name) does not follow, so each is reported whatever happens to the names later.
    pub escalations: Vec<Escalation>,
}

/// A hard link that added mode bits to the file it links to.
#[derive(Debug, Clone, PartialEq)]
pub struct Escalation {
    pub link: Vec<Vec<u8>>,
    pub target: Vec<Vec<u8>>,
    pub mode: u32,
    pub layer: u32,
}

impl Default for Tree {
    fn default() -> Self {
        Tree { root: Node::dir(0o755, 0, 0), occurrence: 0, steps: 0, escalations: Vec::new() }
    }
}

fn shown(path: &[Vec<u8>]) -> String {
    format!("/{}", String::from_utf8_lossy(&path.join(&b'/')))
}

impl Tree {
    /// Starts the next layer occurrence; `layer` names it in findings.
    fn next_occurrence(&mut self) -> u32 {
        self.occurrence += 1;
        self.occurrence
    }

    /// Applies one occurrence of a layer.
    pub fn apply(&mut self, layer: u32, ops: &[Op]) -> Result<(), ScanError> {
        let k = self.next_occurrence();
        for op in ops {
            match op {
                Op::Put { path, kind, mode } => self.put(k, layer, path, kind, *mode)?,
                Op::Whiteout { dir, name } => {
                    if let Some(Kind::Dir { children, .. }) =
                        self.walk_to_dir(k, layer, dir, false)?.map(|n| &mut n.kind)
                    {
                        children.remove(name.as_slice());
                    }
                }
                Op::Opaque { dir } => {
                    let mut steps = 0;
                    if let Some(node) = self.walk_to_dir(k, layer, dir, true)? {
                        opaque_pass(node, k, &mut steps);
                    }
                    self.steps += steps;
                }
            }
        }
        Ok(())
    }

    /// Walks to the directory `dir`, marking each directory on the way as touched by occurrence
    /// `k` (in an overlay, this layer's upper directory now exists there). With `create`, missing
    /// directories are made (mode 0755, as unpackers make parents); without, a missing one is `None`.
    fn walk_to_dir(
        &mut self,
        k: u32,
        layer: u32,
        dir: &[Vec<u8>],
        create: bool,
    ) -> Result<Option<&mut Node>, ScanError> {
        self.steps += dir.len() as u64 + 1;
        let mut node = &mut self.root;
        node.occurrence = k;
        for (i, name) in dir.iter().enumerate() {
            let Kind::Dir { children, .. } = &mut node.kind else { unreachable!("only directories are descended") };
            if !children.contains_key(name.as_slice()) {
                if !create {
                    return Ok(None);
                }
                children.insert(name.clone().into_boxed_slice(), Node::dir(0o755, k, layer));
            }
            let child = children.get_mut(name.as_slice()).expect("present");
            match child.kind {
                Kind::Dir { .. } => {}
                Kind::Symlink(_) => {
                    return Err(ScanError::unreadable(format!(
                        "an entry is written beneath the symbolic link {}; runtimes disagree on where it lands",
                        shown(&dir[..=i])
                    )))
                }
                _ => {
                    return Err(ScanError::unreadable(format!(
                        "an entry is written beneath {}, which is not a directory",
                        shown(&dir[..=i])
                    )))
                }
            }
            child.occurrence = k;
            node = child;
        }
        Ok(Some(node))
    }

    fn put(&mut self, k: u32, layer: u32, path: &[Vec<u8>], kind: &PutKind, mode: u32) -> Result<(), ScanError> {
        let Some((name, parent)) = path.split_last() else {
            // The root itself (`./`): only a directory may stand there.
            return match kind {
                PutKind::Dir => {
                    self.root.mode = mode;
                    Ok(())
                }
                _ => Err(ScanError::unreadable("an entry that is not a directory replaces the root")),
            };
        };
        let new_kind = match kind {
            PutKind::File(c) => Kind::File(c.clone()),
            PutKind::Symlink(t) => Kind::Symlink(t.clone().into_boxed_slice()),
            PutKind::Other => Kind::Other,
            PutKind::Dir => Kind::Dir { children: HashMap::new(), opaque_pass: 0 },
            PutKind::HardLink(target) => {
                let (kind, shared_mode, added) = self.link_target(target, mode)?;
                if added & 0o6002 != 0 {
                    self.escalations.push(Escalation {
                        link: path.to_vec(),
                        target: clean(target),
                        mode: shared_mode & 0o7777,
                        layer,
                    });
                }
                let node = self.walk_to_dir(k, layer, parent, true)?.expect("created");
                let Kind::Dir { children, .. } = &mut node.kind else { unreachable!() };
                children
                    .insert(name.clone().into_boxed_slice(), Node { kind, mode: shared_mode, occurrence: k, layer });
                return Ok(());
            }
        };
        let node = self.walk_to_dir(k, layer, parent, true)?.expect("created");
        let Kind::Dir { children, .. } = &mut node.kind else { unreachable!() };
        if let (Kind::Dir { .. }, Some(existing)) = (&new_kind, children.get_mut(name.as_slice())) {
            if matches!(existing.kind, Kind::Dir { .. }) {
                existing.mode = mode;
                existing.occurrence = k;
                existing.layer = layer;
                return Ok(());
            }
        }
        children.insert(name.clone().into_boxed_slice(), Node { kind: new_kind, mode, occurrence: k, layer });
        Ok(())
    }

    /// What a hard link to `target` (a path in the archive, as extracted so far) becomes, and
    /// the mode the shared inode ends with. Unpackers chmod the link to the link header's mode
    /// when a check on the host succeeds (docker and containerd look the target up relative to
    /// their own working directory), and the chmod changes the target too; whether it happens is
    /// the host's business, so both end with every bit of either mode.
    fn link_target(&mut self, target: &[u8], link_mode: u32) -> Result<(Kind, u32, u32), ScanError> {
        let path = clean(target);
        let mut node = &mut self.root;
        for (i, name) in path.iter().enumerate() {
            let Kind::Dir { children, .. } = &mut node.kind else {
                return Err(ScanError::unreadable(format!(
                    "a hard link to {} passes through a non-directory",
                    shown(&path[..i])
                )));
            };
            node = children.get_mut(name.as_slice()).ok_or_else(|| {
                ScanError::unreadable(format!("a hard link to {}, which does not exist", shown(&path)))
            })?;
            if i + 1 < path.len() && matches!(node.kind, Kind::Symlink(_)) {
                return Err(ScanError::unreadable(format!(
                    "a hard link through the symbolic link {}; runtimes disagree on its target",
                    shown(&path[..=i])
                )));
            }
        }
        let kind = match &node.kind {
            Kind::File(c) => Kind::File(c.clone()),
            Kind::Symlink(t) => Kind::Symlink(t.clone()),
            Kind::Other => Kind::Other,
            Kind::Dir { .. } => {
                return Err(ScanError::unreadable(format!("a hard link to the directory {}", shown(&path))))
            }
        };
        let mut added = 0;
        if !matches!(kind, Kind::Symlink(_)) {
            added = link_mode & 0o7777 & !node.mode;
            node.mode |= added;
        }
        Ok((kind, node.mode, added))
    }

    /// Follows `path` from the root as the kernel would inside the container: symbolic links in
    /// any component (absolute ones from the container's root), `..` stopping at the root.
    pub fn lookup(&self, path: &[u8]) -> Lookup<'_> {
        let mut pending: Vec<Vec<u8>> = path.split(|&b| b == b'/').rev().map(<[u8]>::to_vec).collect();
        let mut at: Vec<Vec<u8>> = Vec::new();
        let mut hops = 0;
        while let Some(part) = pending.pop() {
            match part.as_slice() {
                b"" | b"." => continue,
                b".." => {
                    at.pop();
                    continue;
                }
                _ => {}
            }
            let Some(dir) = self.node_at(&at) else { return Lookup::Missing };
            let Kind::Dir { children, .. } = &dir.kind else { return Lookup::Missing };
            let Some(child) = children.get(part.as_slice()) else { return Lookup::Missing };
            match &child.kind {
                Kind::Symlink(target) => {
                    hops += 1;
                    if hops > 40 {
                        return Lookup::NotAFile;
                    }
                    if target.starts_with(b"/") {
                        at.clear();
                    }
                    pending.extend(target.split(|&b| b == b'/').rev().map(<[u8]>::to_vec));
                }
                Kind::Dir { .. } => at.push(part),
                Kind::File(captured) if pending.iter().all(|p| p.is_empty() || p == b".") => {
                    return Lookup::File(captured.as_deref())
                }
                _ => return Lookup::NotAFile,
            }
        }
        Lookup::NotAFile
    }

    fn node_at(&self, path: &[Vec<u8>]) -> Option<&Node> {
        let mut node = &self.root;
        for name in path {
            let Kind::Dir { children, .. } = &node.kind else { return None };
            node = children.get(name.as_slice())?;
        }
        Some(node)
    }

    /// Calls `visit` for every node of the filesystem, the root included, in no particular order.
    pub fn walk(&self, mut visit: impl FnMut(Visited<'_>)) {
        let mut path = Vec::new();
        walk_node(&self.root, &mut path, &mut visit);
    }
}

fn walk_node(node: &Node, path: &mut Vec<u8>, visit: &mut impl FnMut(Visited<'_>)) {
    let captured = match &node.kind {
        Kind::File(c) => c.as_deref(),
        _ => None,
    };
    visit(Visited {
        path,
        is_dir: matches!(node.kind, Kind::Dir { .. }),
        is_file: matches!(node.kind, Kind::File(_)),
        mode: node.mode,
        layer: node.layer,
        captured,
    });
    if let Kind::Dir { children, .. } = &node.kind {
        for (name, child) in children {
            let len = path.len();
            path.push(b'/');
            path.extend_from_slice(name);
            walk_node(child, path, visit);
            path.truncate(len);
        }
    }
}

/// Hides what occurrences before `k` put below `node`, keeping occurrence `k`'s own entries.
/// Each directory is passed at most once per occurrence: nothing older can appear below it later
/// in the same occurrence.
fn opaque_pass(node: &mut Node, k: u32, steps: &mut u64) {
    let Kind::Dir { children, opaque_pass: pass } = &mut node.kind else { return };
    if *pass == k {
        return;
    }
    *pass = k;
    *steps += children.len() as u64;
    children.retain(|_, child| child.occurrence >= k);
    for child in children.values_mut() {
        opaque_pass(child, k, steps);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(path: &str, kind: PutKind, mode: u32) -> Op {
        op_for(clean(path.as_bytes()), kind, mode).unwrap()
    }
    fn file(path: &str, mode: u32) -> Op {
        put(path, PutKind::File(None), mode)
    }
    fn files(tree: &Tree) -> Vec<(String, u32)> {
        let mut out = Vec::new();
        tree.walk(|v| {
            if v.is_file {
                out.push((String::from_utf8_lossy(v.path).into_owned(), v.mode));
            }
        });
        out.sort();
        out
    }

    #[test]
    fn whiteouts_and_opaque_directories_follow_the_overlay() {
        let mut t = Tree::default();
        t.apply(0, &[file("a/x", 0o644), file("a/y", 0o644), file("b/z", 0o4755), file("keep", 0o644)]).unwrap();
        t.apply(1, &[put("a/.wh..wh..opq", PutKind::File(None), 0), file("a/new", 0o644), file("b/.wh.z", 0)]).unwrap();
        assert_eq!(files(&t), [("/a/new".into(), 0o644), ("/keep".into(), 0o644)]);
        // An opaque marker after this layer's own entries keeps them.
        let mut t = Tree::default();
        t.apply(0, &[file("d/old", 0o644)]).unwrap();
        t.apply(1, &[file("d/mine", 0o644), put("d/.wh..wh..opq", PutKind::File(None), 0)]).unwrap();
        assert_eq!(files(&t), [("/d/mine".into(), 0o644)]);
        // A whiteout after this layer's own file removes it (as overlay and naive unpackers do).
        let mut t = Tree::default();
        t.apply(0, &[file("f", 0o644), put(".wh.f", PutKind::File(None), 0)]).unwrap();
        assert!(files(&t).is_empty());
    }

    #[test]
    fn a_repeated_layer_applies_again_in_its_place() {
        let l1 = [file("etc/passwd", 0o644)];
        let l2 = [put("etc/.wh.passwd", PutKind::File(None), 0)];
        let mut t = Tree::default();
        for (i, l) in [&l1[..], &l2[..], &l1[..]].iter().enumerate() {
            t.apply(i as u32, l).unwrap();
        }
        assert_eq!(files(&t), [("/etc/passwd".into(), 0o644)]);
    }

    #[test]
    fn a_file_replaces_a_directory_tree() {
        let mut t = Tree::default();
        t.apply(0, &[file("etc/passwd", 0o644), file("etc/shadow", 0o4755)]).unwrap();
        t.apply(1, &[put("etc", PutKind::Symlink(b"/x".to_vec()), 0o777), file("x/passwd", 0o644)]).unwrap();
        assert_eq!(files(&t), [("/x/passwd".into(), 0o644)]);
        let passwd = Rc::new(Captured::Passwd(vec![(b"app".to_vec(), 0)]));
        let mut t = Tree::default();
        t.apply(0, &[put("etc", PutKind::Symlink(b"../x/./".to_vec()), 0o777)]).unwrap();
        t.apply(1, &[put("x/passwd", PutKind::File(Some(passwd.clone())), 0o644)]).unwrap();
        assert_eq!(t.lookup(b"/etc/passwd"), Lookup::File(Some(&*passwd)));
        assert_eq!(t.lookup(b"/etc/nothing"), Lookup::Missing);
    }

    #[test]
    fn ambiguity_fails_closed() {
        let mut t = Tree::default();
        t.apply(0, &[put("etc", PutKind::Symlink(b"/x".to_vec()), 0o777)]).unwrap();
        assert!(t.apply(1, &[file("etc/passwd", 0o644)]).is_err(), "beneath a symlink");
        let mut t = Tree::default();
        t.apply(0, &[file("f", 0o644)]).unwrap();
        assert!(t.apply(1, &[file("f/g", 0o644)]).is_err(), "beneath a file");
        assert!(op_for(clean(b"a/.wh.."), PutKind::File(None), 0).is_err());
        assert!(op_for(clean(b"a/.wh."), PutKind::File(None), 0).is_err());
        let mut t = Tree::default();
        assert!(t.apply(0, &[put("l", PutKind::HardLink(b"missing".to_vec()), 0)]).is_err());
    }

    #[test]
    fn hard_links_share_their_mode_and_symlink_loops_end() {
        let mut t = Tree::default();
        t.apply(0, &[file("bin/su", 0o4755), put("bin/alias", PutKind::HardLink(b"./bin/su".to_vec()), 0o644)])
            .unwrap();
        t.apply(1, &[put("bin/.wh.su", PutKind::File(None), 0)]).unwrap();
        assert_eq!(files(&t), [("/bin/alias".into(), 0o4755)]);
        // The link header's mode reaches the target through the shared inode.
        let mut t = Tree::default();
        t.apply(0, &[file("bin/tool", 0o755), put("x", PutKind::HardLink(b"bin/tool".to_vec()), 0o4755)]).unwrap();
        assert_eq!(files(&t), [("/bin/tool".into(), 0o4755), ("/x".into(), 0o4755)]);
        assert_eq!(t.escalations.len(), 1);
        assert_eq!((t.escalations[0].mode, t.escalations[0].target.clone()), (0o4755, clean(b"bin/tool")));
        let mut t = Tree::default();
        t.apply(0, &[put("a", PutKind::Symlink(b"b".to_vec()), 0), put("b", PutKind::Symlink(b"a".to_vec()), 0)])
            .unwrap();
        assert_eq!(t.lookup(b"a/x"), Lookup::NotAFile);
        assert_eq!(clean(b"../../root/./.ssh//id"), [b"root".to_vec(), b".ssh".to_vec(), b"id".to_vec()]);
    }

    /// The work is counted, not timed: 40,000 whiteouts over 40,000 files, and as many opaque
    /// markers over one big directory, each cost a few steps per entry (the quadratic version
    /// cost 1.6 billion).
    #[test]
    fn many_whiteouts_stay_linear() {
        let n = 40_000u64;
        let lower: Vec<Op> = (0..n).map(|i| file(&format!("d/e/f{i}"), 0o644)).collect();
        let upper: Vec<Op> = (0..n).map(|i| put(&format!("d/e/.wh.f{i}"), PutKind::File(None), 0)).collect();
        let mut t = Tree::default();
        t.apply(0, &lower).unwrap();
        t.apply(1, &upper).unwrap();
        assert!(files(&t).is_empty());
        assert!(t.steps < 10 * 2 * n, "{} steps", t.steps);
        let mut mine: Vec<Op> = (0..n).map(|i| file(&format!("d/e/g{i}"), 0o644)).collect();
        mine.extend((0..n).map(|_| put("d/.wh..wh..opq", PutKind::File(None), 0)));
        mine.extend((0..n).map(|_| put("d/e/.wh..wh..opq", PutKind::File(None), 0)));
        let mut t = Tree::default();
        t.apply(0, &lower).unwrap();
        let before = t.steps;
        t.apply(1, &mine).unwrap();
        assert_eq!(files(&t).len(), n as usize);
        assert!(t.steps - before < 10 * 3 * n, "{} steps", t.steps - before);
    }
}
