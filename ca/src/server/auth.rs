//! Who may call what: signed requests (authentication) and the `hf.*` rights of registrars and
//! revokers (authorisation).
//!
//! # Signed requests
//! Every call other than `Enroll` and `GetCaInfo` carries an encoded `AuthenticatedRequest` (the
//! caller's enrollment certificate, a timestamp, a nonce and the body) and a signature by that
//! certificate's key over [`SIGNING_CONTEXT`] followed by those exact bytes. The context makes a
//! CA request signature useless anywhere else (a proposal, a transaction) and the reverse.
//!
//! The CA checks the certificate against its own MSP (chain and role), its validity at the
//! server's clock, and its registry: the certificate must be one the CA issued, not revoked, to
//! an identity that is not revoked. The registry is consulted rather than a CRL because it is the
//! source a CRL is made from: a revocation takes effect on the next request, not the next CRL.
//!
//! Replays are refused in two ways: the timestamp must be within `request_max_age_secs` of the
//! server's clock, and within that window the server remembers the SHA-256 of every request it
//! accepted and refuses a second copy. A restart forgets that memory, so a request captured in
//! the last few minutes before a restart could be replayed once after it; every signed request
//! is idempotent or harmless when repeated (a second registration of the same id is refused, a
//! second revocation finds nothing left to revoke, a re-enrollment issues a certificate only for
//! the key in its CSR, which the attacker does not hold).
//!
//! # Rights
//! Like Fabric CA, rights are attributes of the caller's registration (they are not written
//! into certificates):
//! - `hf.Registrar.Roles`: the types (roles) the caller may register and manage, comma-separated,
//!   or `*` for all;
//! - `hf.Registrar.Attributes`: the attributes it may grant: names, prefixes ending in `*`
//!   (`app.*`), or `*` for all;
//! - `hf.Revoker=true`: it may revoke identities and certificates it manages;
//! - `hf.GenCRL=true`: it may generate CRLs (a revoker may too);
//! - `hf.IntermediateCA=true`: it may enroll for an intermediate CA certificate.
//!
//! Only an identity of type `admin` has rights. A registrar grants only what it holds: roles
//! among its own, attributes its patterns cover, and `hf.Revoker`, `hf.GenCRL` or
//! `hf.IntermediateCA` only if it has them itself. It manages identities whose type it may
//! register and whose affiliation is its own or below it (an empty affiliation is the root).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use mercato_proto::hash::sha256;

use crate::error::CaError;
use crate::identity::Role;
use crate::registry::Registration;

/// What a request signature covers: this context, then the encoded `AuthenticatedRequest`.
pub const SIGNING_CONTEXT: &[u8] = b"mercato-ca-request-v1\0";

/// The bytes a caller signs for an encoded `AuthenticatedRequest`.
pub fn signed_message(request: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(SIGNING_CONTEXT.len() + request.len());
    m.extend_from_slice(SIGNING_CONTEXT);
    m.extend_from_slice(request);
    m
}

/// The attribute naming the types a registrar may register.
pub const REGISTRAR_ROLES: &str = "hf.Registrar.Roles";
/// The attribute naming the attributes a registrar may grant.
pub const REGISTRAR_ATTRIBUTES: &str = "hf.Registrar.Attributes";
/// The attribute that lets an admin revoke.
pub const REVOKER: &str = "hf.Revoker";
/// The attribute that lets an admin generate CRLs.
pub const GEN_CRL: &str = "hf.GenCRL";
/// The attribute that lets an identity enroll for an intermediate CA certificate.
pub const INTERMEDIATE_CA: &str = "hf.IntermediateCA";
/// Attributes the CA writes into every enrollment certificate, as Fabric CA does; a registrar
/// cannot set them.
pub const ENROLLMENT_ID_ATTR: &str = "hf.EnrollmentID";
/// See [`ENROLLMENT_ID_ATTR`].
pub const TYPE_ATTR: &str = "hf.Type";
/// See [`ENROLLMENT_ID_ATTR`].
pub const AFFILIATION_ATTR: &str = "hf.Affiliation";

/// The boolean rights.
const FLAGS: [&str; 3] = [REVOKER, GEN_CRL, INTERMEDIATE_CA];

/// The attributes of the bootstrap admin: every right.
pub fn bootstrap_admin_attributes() -> BTreeMap<String, String> {
    [
        (REGISTRAR_ROLES, "*"),
        (REGISTRAR_ATTRIBUTES, "*"),
        (REVOKER, "true"),
        (GEN_CRL, "true"),
        (INTERMEDIATE_CA, "true"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

/// A set of roles: some, or every one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoleSet {
    /// Every role (`*`).
    All,
    /// These roles.
    Some(BTreeSet<Role>),
}

impl RoleSet {
    fn parse(value: &str) -> Result<Self, CaError> {
        let mut roles = BTreeSet::new();
        for part in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            if part == "*" {
                return Ok(RoleSet::All);
            }
            roles.insert(part.parse::<Role>().map_err(|_| {
                CaError::InvalidRequest(format!(
                    "{REGISTRAR_ROLES} names an unknown type {part:?} (client, peer, orderer, admin, auditor or *)"
                ))
            })?);
        }
        Ok(RoleSet::Some(roles))
    }

    fn contains(&self, role: Role) -> bool {
        match self {
            RoleSet::All => true,
            RoleSet::Some(s) => s.contains(&role),
        }
    }

    fn covers(&self, other: &RoleSet) -> bool {
        match (self, other) {
            (RoleSet::All, _) => true,
            (RoleSet::Some(_), RoleSet::All) => false,
            (RoleSet::Some(mine), RoleSet::Some(theirs)) => theirs.is_subset(mine),
        }
    }

    fn is_empty(&self) -> bool {
        matches!(self, RoleSet::Some(s) if s.is_empty())
    }

    fn describe(&self) -> String {
        match self {
            RoleSet::All => "*".into(),
            RoleSet::Some(s) => s.iter().map(|r| r.as_str()).collect::<Vec<_>>().join(","),
        }
    }
}

/// An attribute pattern: a name, a prefix ending in `*`, or `*`.
fn pattern_matches(pattern: &str, name: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => pattern == name,
    }
}

fn patterns(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .map(str::to_owned)
        .collect()
}

/// What a registration allows, read from its `hf.*` attributes.
#[derive(Debug, Clone)]
pub struct Rights {
    role: Role,
    affiliation: String,
    registrar_roles: RoleSet,
    registrar_attributes: Vec<String>,
    revoker: bool,
    gen_crl: bool,
    intermediate_ca: bool,
}

impl Rights {
    /// The rights of `reg`. Rights only count for an identity of type admin, except
    /// `hf.IntermediateCA` (an intermediate CA is not an admin).
    pub fn of(reg: &Registration) -> Self {
        let flag = |name: &str| reg.attribute(name) == Some("true");
        let admin = reg.role == Role::Admin;
        Rights {
            role: reg.role,
            affiliation: reg.affiliation.clone(),
            registrar_roles: match reg.attribute(REGISTRAR_ROLES) {
                // A stored value was checked when it was registered; an unreadable one grants
                // nothing rather than failing every request of the identity.
                Some(v) if admin => RoleSet::parse(v).unwrap_or(RoleSet::Some(BTreeSet::new())),
                _ => RoleSet::Some(BTreeSet::new()),
            },
            registrar_attributes: match reg.attribute(REGISTRAR_ATTRIBUTES) {
                Some(v) if admin => patterns(v),
                _ => Vec::new(),
            },
            revoker: admin && flag(REVOKER),
            gen_crl: admin && flag(GEN_CRL),
            intermediate_ca: flag(INTERMEDIATE_CA),
        }
    }

    /// Whether the identity may enroll for an intermediate CA certificate.
    pub fn may_enroll_intermediate_ca(&self) -> bool {
        self.intermediate_ca
    }

    /// Refuses a caller that is not a registrar.
    pub fn require_registrar(&self, caller: &str) -> Result<(), CaError> {
        if self.role != Role::Admin || self.registrar_roles.is_empty() {
            return Err(CaError::Forbidden(format!(
                "{caller:?} is not a registrar (an admin with {REGISTRAR_ROLES})"
            )));
        }
        Ok(())
    }

    /// Refuses a caller that may not revoke.
    pub fn require_revoker(&self, caller: &str) -> Result<(), CaError> {
        if !self.revoker {
            return Err(CaError::Forbidden(format!(
                "{caller:?} may not revoke (it needs to be an admin with {REVOKER}=true)"
            )));
        }
        Ok(())
    }

    /// Refuses a caller that may not generate CRLs.
    pub fn require_gen_crl(&self, caller: &str) -> Result<(), CaError> {
        if !self.gen_crl && !self.revoker {
            return Err(CaError::Forbidden(format!(
                "{caller:?} may not generate CRLs (it needs to be an admin with {GEN_CRL}=true or {REVOKER}=true)"
            )));
        }
        Ok(())
    }

    /// Whether the caller manages `target`: it may register its type, and its affiliation is
    /// the caller's own or below it.
    pub fn manages(&self, target: &Registration) -> bool {
        self.registrar_roles.contains(target.role)
            && affiliation_within(&target.affiliation, &self.affiliation)
    }

    /// Refuses when the caller does not manage `target`.
    pub fn require_manages(&self, caller: &str, target: &Registration) -> Result<(), CaError> {
        if !self.manages(target) {
            return Err(CaError::Forbidden(format!(
                "{caller:?} does not manage {:?} (type {}, affiliation {:?}); it manages types {} under affiliation {:?}",
                target.id,
                target.role,
                target.affiliation,
                self.registrar_roles.describe(),
                self.affiliation
            )));
        }
        Ok(())
    }

    /// Checks that the caller may register an identity of `role` in `affiliation` with
    /// `attributes`.
    pub fn check_registration(
        &self,
        caller: &str,
        role: Role,
        affiliation: &str,
        attributes: &BTreeMap<String, String>,
    ) -> Result<(), CaError> {
        self.require_registrar(caller)?;
        if !self.registrar_roles.contains(role) {
            return Err(CaError::Forbidden(format!(
                "registrar {caller:?} may register types {}, not {role}",
                self.registrar_roles.describe()
            )));
        }
        if !affiliation_within(affiliation, &self.affiliation) {
            return Err(CaError::Forbidden(format!(
                "registrar {caller:?} of affiliation {:?} may not register in affiliation {affiliation:?}",
                self.affiliation
            )));
        }
        for (name, value) in attributes {
            if [ENROLLMENT_ID_ATTR, TYPE_ATTR, AFFILIATION_ATTR].contains(&name.as_str()) {
                return Err(CaError::InvalidRequest(format!(
                    "attribute {name} is set by the CA, not by a registrar"
                )));
            }
            if name.starts_with("hf.")
                && !FLAGS.contains(&name.as_str())
                && name != REGISTRAR_ROLES
                && name != REGISTRAR_ATTRIBUTES
            {
                return Err(CaError::InvalidRequest(format!(
                    "unknown right {name} (known: {REGISTRAR_ROLES}, {REGISTRAR_ATTRIBUTES}, {REVOKER}, {GEN_CRL}, {INTERMEDIATE_CA})"
                )));
            }
            if !self
                .registrar_attributes
                .iter()
                .any(|p| pattern_matches(p, name))
            {
                return Err(CaError::Forbidden(format!(
                    "registrar {caller:?} may not grant attribute {name} ({REGISTRAR_ATTRIBUTES} is {:?})",
                    self.registrar_attributes.join(",")
                )));
            }
            self.check_grant(caller, name, value)?;
        }
        Ok(())
    }

    /// A registrar never grants more than it holds.
    fn check_grant(&self, caller: &str, name: &str, value: &str) -> Result<(), CaError> {
        let beyond = |what: String| {
            Err(CaError::Forbidden(format!(
                "registrar {caller:?} may not grant {what}: it does not hold it"
            )))
        };
        if FLAGS.contains(&name) {
            let held = match name {
                REVOKER => self.revoker,
                GEN_CRL => self.gen_crl,
                _ => self.intermediate_ca,
            };
            return match value {
                "false" => Ok(()),
                "true" if held => Ok(()),
                "true" => beyond(format!("{name}=true")),
                other => Err(CaError::InvalidRequest(format!(
                    "{name} must be true or false, not {other:?}"
                ))),
            };
        }
        if name == REGISTRAR_ROLES {
            let wanted = RoleSet::parse(value)?;
            if !self.registrar_roles.covers(&wanted) {
                return beyond(format!("{REGISTRAR_ROLES}={value}"));
            }
        }
        if name == REGISTRAR_ATTRIBUTES {
            for wanted in patterns(value) {
                let covered = self.registrar_attributes.iter().any(|mine| {
                    mine == &wanted
                        || mine
                            .strip_suffix('*')
                            .is_some_and(|prefix| wanted.starts_with(prefix))
                });
                if !covered {
                    return beyond(format!("{REGISTRAR_ATTRIBUTES} pattern {wanted:?}"));
                }
            }
        }
        Ok(())
    }
}

/// Whether `affiliation` is `parent` or below it (`org1.sellers` is within `org1`; everything
/// is within the root, the empty affiliation).
pub fn affiliation_within(affiliation: &str, parent: &str) -> bool {
    parent.is_empty()
        || affiliation == parent
        || affiliation
            .strip_prefix(parent)
            .is_some_and(|rest| rest.starts_with('.'))
}

/// The requests accepted within the replay window, by hash, so a second copy is refused. Each
/// caller may hold only a share of it, so that one member sending requests as fast as it can
/// cannot fill it and lock everyone else out.
#[derive(Debug)]
pub struct ReplayCache {
    capacity: usize,
    per_caller: usize,
    /// Hash → (the time after which it can be forgotten, the caller).
    seen: HashMap<[u8; 32], (i64, String)>,
    /// (expiry, hash), to forget in expiry order.
    by_expiry: BTreeSet<(i64, [u8; 32])>,
    /// How many live entries each caller holds.
    held: HashMap<String, usize>,
}

impl ReplayCache {
    /// A cache that holds at most `capacity` requests, and at most a sixteenth of them (at least
    /// one) from any one caller.
    pub fn new(capacity: usize) -> Self {
        ReplayCache {
            capacity,
            per_caller: (capacity / 16).max(1),
            seen: HashMap::new(),
            by_expiry: BTreeSet::new(),
            held: HashMap::new(),
        }
    }

    /// Records `request` by `caller` (kept until `expires`); refuses it if it was recorded
    /// before, or if the cache, or the caller's share of it, is full of requests still inside
    /// their window.
    pub fn check_and_insert(
        &mut self,
        caller: &str,
        request: &[u8],
        expires: i64,
        now: i64,
    ) -> Result<(), CaError> {
        while let Some(&(expiry, hash)) = self.by_expiry.first() {
            if expiry >= now {
                break;
            }
            self.by_expiry.pop_first();
            if let Some((_, who)) = self.seen.remove(&hash)
                && let Some(n) = self.held.get_mut(&who)
            {
                *n -= 1;
                if *n == 0 {
                    self.held.remove(&who);
                }
            }
        }
        let hash = sha256(request);
        if self.seen.contains_key(&hash) {
            return Err(CaError::Unauthenticated(
                "this signed request was already used (replay)".into(),
            ));
        }
        let held = self.held.get(caller).copied().unwrap_or(0);
        if held >= self.per_caller {
            return Err(CaError::Busy(format!(
                "{caller:?} sent {held} signed requests inside the replay window, its limit; try again shortly"
            )));
        }
        if self.seen.len() >= self.capacity {
            return Err(CaError::Busy(format!(
                "{} signed requests inside the replay window; try again shortly",
                self.seen.len()
            )));
        }
        self.seen.insert(hash, (expires, caller.to_owned()));
        self.by_expiry.insert((expires, hash));
        *self.held.entry(caller.to_owned()).or_default() += 1;
        Ok(())
    }

    /// How many requests are remembered.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::password::SecretHash;

    fn reg(role: Role, affiliation: &str, attrs: &[(&str, &str)]) -> Registration {
        Registration {
            id: "r".into(),
            role,
            affiliation: affiliation.into(),
            attributes: attrs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            max_enrollments: None,
            enrollments: 0,
            secret: SecretHash {
                iterations: 1,
                salt: vec![],
                hash: vec![],
            },
            registered_by: String::new(),
            registered_at: 0,
            revoked: None,
        }
    }

    fn attrs(list: &[(&str, &str)]) -> BTreeMap<String, String> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn the_bootstrap_admin_may_do_everything() {
        let admin = Rights::of(&reg(Role::Admin, "", &[]));
        assert!(admin.require_registrar("a").is_err());
        let admin_reg = Registration {
            attributes: bootstrap_admin_attributes(),
            ..reg(Role::Admin, "", &[])
        };
        let r = Rights::of(&admin_reg);
        r.require_registrar("a").unwrap();
        r.require_revoker("a").unwrap();
        r.require_gen_crl("a").unwrap();
        for role in Role::ALL {
            r.check_registration(
                "a",
                role,
                "org1.x",
                &attrs(&[("role", "brand"), (REVOKER, "true"), (REGISTRAR_ROLES, "*")]),
            )
            .unwrap();
        }
    }

    #[test]
    fn a_registrar_is_limited_to_its_roles_attributes_and_affiliation() {
        let r = Rights::of(&reg(
            Role::Admin,
            "org1",
            &[
                (REGISTRAR_ROLES, "client,peer"),
                (REGISTRAR_ATTRIBUTES, "role,shop.*"),
            ],
        ));
        r.check_registration("r", Role::Client, "org1", &attrs(&[("role", "brand")]))
            .unwrap();
        r.check_registration("r", Role::Peer, "org1.sub", &attrs(&[("shop.id", "7")]))
            .unwrap();
        let forbidden = |role, aff: &str, a: &[(&str, &str)]| {
            matches!(
                r.check_registration("r", role, aff, &attrs(a)),
                Err(CaError::Forbidden(_))
            )
        };
        assert!(forbidden(Role::Admin, "org1", &[]));
        assert!(forbidden(Role::Client, "org2", &[]));
        assert!(forbidden(Role::Client, "org10", &[]));
        assert!(forbidden(Role::Client, "", &[]));
        assert!(forbidden(Role::Client, "org1", &[("price", "1")]));
        // Rights it does not hold, even where its patterns would allow the name.
        let wide = Rights::of(&reg(
            Role::Admin,
            "",
            &[(REGISTRAR_ROLES, "client"), (REGISTRAR_ATTRIBUTES, "*")],
        ));
        for (name, value) in [
            (REVOKER, "true"),
            (GEN_CRL, "true"),
            (INTERMEDIATE_CA, "true"),
            (REGISTRAR_ROLES, "client,admin"),
            (REGISTRAR_ROLES, "*"),
        ] {
            assert!(
                matches!(
                    wide.check_registration("w", Role::Client, "", &attrs(&[(name, value)])),
                    Err(CaError::Forbidden(_))
                ),
                "{name}={value}"
            );
        }
        wide.check_registration("w", Role::Client, "", &attrs(&[(REVOKER, "false")]))
            .unwrap();
        // Reserved and unknown rights are malformed requests.
        for name in [ENROLLMENT_ID_ATTR, "hf.Whatever"] {
            assert!(matches!(
                wide.check_registration("w", Role::Client, "", &attrs(&[(name, "x")])),
                Err(CaError::InvalidRequest(_))
            ));
        }
    }

    #[test]
    fn attribute_patterns_must_be_covered() {
        let r = Rights::of(&reg(
            Role::Admin,
            "",
            &[
                (REGISTRAR_ROLES, "admin"),
                (REGISTRAR_ATTRIBUTES, "hf.*,app.*"),
            ],
        ));
        r.check_registration(
            "r",
            Role::Admin,
            "",
            &attrs(&[(REGISTRAR_ATTRIBUTES, "app.x,app.y*")]),
        )
        .unwrap();
        assert!(
            r.check_registration("r", Role::Admin, "", &attrs(&[(REGISTRAR_ATTRIBUTES, "*")]))
                .is_err()
        );
    }

    #[test]
    fn rights_need_the_admin_type() {
        let client = Rights::of(&reg(
            Role::Client,
            "",
            &[
                (REGISTRAR_ROLES, "*"),
                (REVOKER, "true"),
                (INTERMEDIATE_CA, "true"),
            ],
        ));
        assert!(client.require_registrar("c").is_err());
        assert!(client.require_revoker("c").is_err());
        assert!(client.may_enroll_intermediate_ca());
    }

    #[test]
    fn affiliations_nest_by_dotted_segments() {
        assert!(affiliation_within("org1", ""));
        assert!(affiliation_within("org1", "org1"));
        assert!(affiliation_within("org1.a.b", "org1.a"));
        assert!(!affiliation_within("org10", "org1"));
        assert!(!affiliation_within("", "org1"));
    }

    #[test]
    fn the_replay_cache_refuses_copies_and_forgets_after_the_window() {
        let mut c = ReplayCache::new(32);
        c.check_and_insert("x", b"a", 100, 0).unwrap();
        assert!(matches!(
            c.check_and_insert("x", b"a", 100, 50),
            Err(CaError::Unauthenticated(_))
        ));
        c.check_and_insert("x", b"b", 100, 50).unwrap();
        // x's share (32 / 16) is used up; another caller still gets in.
        assert!(matches!(
            c.check_and_insert("x", b"c", 100, 50),
            Err(CaError::Busy(_))
        ));
        c.check_and_insert("y", b"c", 100, 50).unwrap();
        // Past the window all are forgotten, and x's share is free again.
        c.check_and_insert("x", b"d", 300, 101).unwrap();
        c.check_and_insert("x", b"e", 300, 101).unwrap();
        assert_eq!(c.len(), 2);
    }

    #[test]
    fn a_full_replay_cache_is_busy_for_everyone() {
        let mut c = ReplayCache::new(4);
        for (i, who) in ["a", "b", "c", "d"].into_iter().enumerate() {
            c.check_and_insert(who, &[i as u8], 100, 0).unwrap();
        }
        assert!(matches!(
            c.check_and_insert("e", b"z", 100, 0),
            Err(CaError::Busy(_))
        ));
    }
}
