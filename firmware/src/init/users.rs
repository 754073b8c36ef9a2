//! Looks up a service's user in /etc/passwd (name -> uid, gid) and a
//! group in /etc/group (name -> gid, members). The parsers are bounded and
//! strict about field counts; they never consult NSS or any other database.

/// /etc/passwd larger than this is not read (a board has a dozen users).
pub const MAX_PASSWD_BYTES: usize = 64 * 1024;

/// A user's numeric ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ids {
    pub uid: u32,
    pub gid: u32,
}

/// Finds `name` in a passwd text (`name:x:uid:gid:gecos:home:shell`).
pub fn lookup(passwd: &str, name: &str) -> Option<Ids> {
    if passwd.len() > MAX_PASSWD_BYTES {
        return None;
    }
    passwd.lines().find_map(|line| {
        let f: Vec<&str> = line.splitn(8, ':').collect();
        if f.len() != 7 || f[0] != name {
            return None;
        }
        Some(Ids {
            uid: f[2].parse().ok()?,
            gid: f[3].parse().ok()?,
        })
    })
}

/// Looks `name` up in /etc/passwd.
pub fn lookup_system(name: &str) -> Option<Ids> {
    if name == "root" {
        return Some(Ids { uid: 0, gid: 0 });
    }
    let text = std::fs::read_to_string("/etc/passwd").ok()?;
    lookup(&text, name)
}

/// The group whose members (the service users) may create files in
/// `system.data_dir` and `system.run_dir` (init makes both `root:GROUP`,
/// mode 1770: group-writable, sticky, so no one removes another's files).
pub const SERVICE_GROUP: &str = "pocobelle";
/// /etc/group larger than this is not read.
pub const MAX_GROUP_BYTES: usize = 64 * 1024;
/// At most this many members of one group are taken.
pub const MAX_GROUP_MEMBERS: usize = 32;

/// A group's id and member list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    pub gid: u32,
    pub members: Vec<String>,
}

/// Finds `name` in a group text (`name:x:gid:member,member`).
pub fn lookup_group(group: &str, name: &str) -> Option<Group> {
    if group.len() > MAX_GROUP_BYTES {
        return None;
    }
    group.lines().find_map(|line| {
        let f: Vec<&str> = line.splitn(5, ':').collect();
        if f.len() != 4 || f[0] != name {
            return None;
        }
        Some(Group {
            gid: f[2].parse().ok()?,
            members: f[3]
                .split(',')
                .filter(|m| !m.is_empty())
                .take(MAX_GROUP_MEMBERS)
                .map(str::to_string)
                .collect(),
        })
    })
}

/// Looks `name` up in /etc/group.
pub fn lookup_group_system(name: &str) -> Option<Group> {
    let text = std::fs::read_to_string("/etc/group").ok()?;
    lookup_group(&text, name)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\npocobelle-dns:x:101:101:DNS:/nonexistent:/bin/false\nbad:x:1\npocobelle-mail:x:102:102::/data/spool:/bin/false\n";

    #[test]
    fn finds_groups_and_members() {
        let g = "root:x:0:\npocobelle:x:100:pocobelle-dns,pocobelle-mail\nshort:x:3\n";
        assert_eq!(
            lookup_group(g, "pocobelle"),
            Some(Group {
                gid: 100,
                members: vec!["pocobelle-dns".into(), "pocobelle-mail".into()]
            })
        );
        assert_eq!(
            lookup_group(g, "root").unwrap().members,
            Vec::<String>::new()
        );
        assert_eq!(lookup_group(g, "short"), None);
        let shipped = include_str!("../../../rootfs-overlay/etc/group");
        let p = lookup_group(shipped, SERVICE_GROUP).expect("service group shipped");
        assert!(p.members.iter().any(|m| m == "pocobelle-dns"));
        assert!(p.members.iter().any(|m| m == "pocobelle-mail"));
    }

    #[test]
    fn finds_users() {
        assert_eq!(
            lookup(PASSWD, "pocobelle-dns"),
            Some(Ids { uid: 101, gid: 101 })
        );
        assert_eq!(
            lookup(PASSWD, "pocobelle-mail"),
            Some(Ids { uid: 102, gid: 102 })
        );
        assert_eq!(lookup(PASSWD, "bad"), None);
        assert_eq!(lookup(PASSWD, "nobody"), None);
    }

    /// The shipped /etc/passwd has the users of the built-in services.
    #[test]
    fn shipped_passwd_has_the_service_users() {
        let text = include_str!("../../../rootfs-overlay/etc/passwd");
        for svc in crate::config::ServiceConfig::defaults(|_| true) {
            let ids =
                lookup(text, &svc.user_name()).expect("service user in rootfs-overlay/etc/passwd");
            assert_ne!(ids.uid, 0);
        }
    }

    #[test]
    fn fuzz_never_panics() {
        let mut x: u64 = 0x1234_5678_9abc;
        for _ in 0..3000 {
            let mut s = String::new();
            for _ in 0..(x % 60) {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                s.push(b"ab:01x\n9"[(x % 8) as usize] as char);
            }
            let _ = lookup(&s, "a");
            let _ = lookup(&s, "");
        }
    }
}
