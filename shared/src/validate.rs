//! Request validation: table names, attributes, key schema and capacity.
//!
//! Used both at the API edge (to answer 400 early) and inside `MetaState::apply`
//! (which never trusts the proposer), so the two can never disagree.

use std::collections::BTreeSet;

use crate::api::CapacityRequest;
use crate::command::{MetaError, TableSpec};
use crate::model::{Attribute, Capacity, CapacityMode, Table};

/// Shortest table name, in characters (DynamoDB rule).
pub const TABLE_NAME_MIN_LEN: usize = 3;
/// Longest table name, in characters (DynamoDB rule).
pub const TABLE_NAME_MAX_LEN: usize = 255;
/// Shortest attribute name, in bytes.
pub const ATTRIBUTE_NAME_MIN_LEN: usize = 1;
/// Longest attribute name, in bytes (DynamoDB's limit for key attributes).
pub const ATTRIBUTE_NAME_MAX_LEN: usize = 255;
/// Most attributes in one schema version.
pub const MAX_ATTRIBUTES: usize = 256;
/// Fewest read or write units of a PROVISIONED table.
pub const MIN_CAPACITY_UNITS: u64 = 1;
/// Most read or write units of a PROVISIONED table, per dimension.
pub const MAX_CAPACITY_UNITS: u64 = 1_000_000;
/// Most partitions one table may have (hard bound, above any placement config).
pub const MAX_PARTITIONS_PER_TABLE: usize = 65_536;
/// Most nodes (primary plus replicas) holding one partition.
pub const MAX_REPLICATION_FACTOR: usize = 7;
/// Most partition changes in one `RepairPartitions` command: bounds the size of one log
/// entry (about 15 bytes per change in postcard, so roughly 300 KiB at most).
pub const MAX_REPAIRS_PER_COMMAND: usize = 20_000;
/// Most schema versions one table may accumulate (versions are immutable and kept).
pub const MAX_SCHEMA_VERSIONS_PER_TABLE: u32 = 10_000;
/// Longest cluster id, in bytes.
pub const CLUSTER_ID_MAX_LEN: usize = 255;
/// Longest node endpoint, peer address or zone, in bytes.
pub const NODE_FIELD_MAX_LEN: usize = 1024;
/// Most principals in the registry.
pub const MAX_PRINCIPALS: usize = 100_000;
/// Most signing keys published at once (active, or retired and still trusted).
pub const MAX_SIGNING_KEYS: usize = 1024;
/// Longest signing key id (`kid`), in bytes.
pub const KEY_ID_MAX_LEN: usize = 128;
/// Most revoked credentials remembered at once (each until its token would expire).
pub const MAX_REVOCATIONS: usize = 1_000_000;
/// Longest credential id (`jti`) that can be revoked, in bytes.
pub const TOKEN_ID_MAX_LEN: usize = 128;
/// Finished operations (split, move) kept as history for operators; older ones are
/// dropped first (running operations are bounded by the partitions, one each).
pub const MAX_FINISHED_OPERATIONS: usize = 1000;
/// Longest `requested_by` of an operation, in bytes.
pub const REQUESTED_BY_MAX_LEN: usize = 256;
/// Longest reason of a failed operation, in bytes.
pub const FAILURE_REASON_MAX_LEN: usize = 1024;
/// Most retries of one step of an operation: a hard stop above any driver's
/// configured retry bound, so a looping driver cannot grow a record forever.
pub const MAX_STEP_ATTEMPTS: u32 = 100;

fn invalid(msg: impl Into<String>) -> MetaError {
    MetaError::Invalid(msg.into())
}

/// Checks a table name against DynamoDB's rules: 3–255 characters of `[A-Za-z0-9_.-]`.
pub fn validate_table_name(name: &str) -> Result<(), MetaError> {
    // Only ASCII characters are allowed, so the byte length is the character count.
    let len = name.len();
    if !(TABLE_NAME_MIN_LEN..=TABLE_NAME_MAX_LEN).contains(&len) {
        return Err(invalid(format!(
            "table name must be {TABLE_NAME_MIN_LEN} to {TABLE_NAME_MAX_LEN} characters long, got {len}"
        )));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-')))
    {
        return Err(invalid(format!(
            "table name {name:?} contains {c:?}; allowed characters are A-Z a-z 0-9 _ . -"
        )));
    }
    Ok(())
}

/// Checks one attribute name: 1–255 bytes, no control characters.
pub fn validate_attribute_name(name: &str) -> Result<(), MetaError> {
    let len = name.len();
    if !(ATTRIBUTE_NAME_MIN_LEN..=ATTRIBUTE_NAME_MAX_LEN).contains(&len) {
        return Err(invalid(format!(
            "attribute name must be {ATTRIBUTE_NAME_MIN_LEN} to {ATTRIBUTE_NAME_MAX_LEN} bytes long, got {len}"
        )));
    }
    if name.chars().any(char::is_control) {
        return Err(invalid(format!(
            "attribute name {name:?} contains a control character"
        )));
    }
    Ok(())
}

/// Checks a list of attributes: count bounded, every name valid, names unique.
pub fn validate_attributes(attributes: &[Attribute]) -> Result<(), MetaError> {
    if attributes.len() > MAX_ATTRIBUTES {
        return Err(invalid(format!(
            "a schema has at most {MAX_ATTRIBUTES} attributes, got {}",
            attributes.len()
        )));
    }
    let mut seen = BTreeSet::new();
    for attr in attributes {
        validate_attribute_name(&attr.name)?;
        if !seen.insert(attr.name.as_str()) {
            return Err(invalid(format!(
                "attribute {:?} is defined twice",
                attr.name
            )));
        }
    }
    Ok(())
}

/// Checks a capacity: PROVISIONED units in range, ON_DEMAND units zero.
pub fn validate_capacity(capacity: &Capacity) -> Result<(), MetaError> {
    match capacity.mode {
        CapacityMode::Provisioned => {
            check_units("read_units", capacity.read_units)?;
            check_units("write_units", capacity.write_units)
        }
        CapacityMode::OnDemand => {
            if capacity.read_units != 0 || capacity.write_units != 0 {
                return Err(invalid(
                    "ON_DEMAND capacity must not set read_units or write_units",
                ));
            }
            Ok(())
        }
    }
}

fn check_units(what: &str, units: u64) -> Result<(), MetaError> {
    if !(MIN_CAPACITY_UNITS..=MAX_CAPACITY_UNITS).contains(&units) {
        return Err(invalid(format!(
            "PROVISIONED {what} must be between {MIN_CAPACITY_UNITS} and {MAX_CAPACITY_UNITS}, got {units}"
        )));
    }
    Ok(())
}

/// Turns a client's capacity request into a checked capacity (ON_DEMAND is stored as 0/0).
pub fn capacity_from_request(req: &CapacityRequest) -> Result<Capacity, MetaError> {
    let capacity = match req.mode {
        CapacityMode::Provisioned => {
            let (Some(read_units), Some(write_units)) = (req.read_units, req.write_units) else {
                return Err(invalid(
                    "PROVISIONED capacity needs both read_units and write_units",
                ));
            };
            Capacity {
                mode: CapacityMode::Provisioned,
                read_units,
                write_units,
            }
        }
        CapacityMode::OnDemand => {
            if req.read_units.is_some() || req.write_units.is_some() {
                return Err(invalid(
                    "ON_DEMAND capacity must not set read_units or write_units",
                ));
            }
            Capacity {
                mode: CapacityMode::OnDemand,
                read_units: 0,
                write_units: 0,
            }
        }
    };
    validate_capacity(&capacity)?;
    Ok(capacity)
}

/// Checks that `key` names an attribute of a key type (S, N or B).
fn check_key_attribute(role: &str, key: &str, attributes: &[Attribute]) -> Result<(), MetaError> {
    let Some(attr) = attributes.iter().find(|a| a.name == key) else {
        return Err(invalid(format!(
            "{role} {key:?} is not among the schema attributes"
        )));
    };
    if !attr.attr_type.is_key_type() {
        return Err(invalid(format!(
            "{role} {key:?} has type {:?}; key attributes must be S, N or B",
            attr.attr_type
        )));
    }
    Ok(())
}

/// Checks a whole table spec: name, attributes, key attributes and capacity.
pub fn validate_spec(spec: &TableSpec) -> Result<(), MetaError> {
    validate_table_name(&spec.table_name)?;
    validate_attributes(&spec.attributes)?;
    check_key_attribute("partition key", &spec.partition_key, &spec.attributes)?;
    if let Some(sort_key) = &spec.sort_key {
        if *sort_key == spec.partition_key {
            return Err(invalid(format!(
                "sort key {sort_key:?} must differ from the partition key"
            )));
        }
        check_key_attribute("sort key", sort_key, &spec.attributes)?;
    }
    validate_capacity(&spec.capacity)
}

/// Checks that a key attribute keeps its name and type from `current` to `new`.
fn check_key_kept(
    role: &str,
    key: &str,
    current: &[Attribute],
    new: &[Attribute],
) -> Result<(), MetaError> {
    let old = current.iter().find(|a| a.name == key);
    let Some(new_attr) = new.iter().find(|a| a.name == key) else {
        return Err(MetaError::IncompatibleSchema(format!(
            "{role} {key:?} must stay in the schema"
        )));
    };
    match old {
        Some(old_attr) if old_attr.attr_type != new_attr.attr_type => {
            Err(MetaError::IncompatibleSchema(format!(
                "{role} {key:?} cannot change type from {:?} to {:?}",
                old_attr.attr_type, new_attr.attr_type
            )))
        }
        // A current version without the key would break an invariant; the new one must
        // at least give the key a key type.
        None if !new_attr.attr_type.is_key_type() => Err(MetaError::IncompatibleSchema(format!(
            "{role} {key:?} must have type S, N or B"
        ))),
        _ => Ok(()),
    }
}

/// Checks that `new` may follow `current` as the table's schema: names valid and
/// unique (`Invalid`), key attributes kept with their types (`IncompatibleSchema`).
pub fn check_schema_compatible(
    table: &Table,
    current: &[Attribute],
    new: &[Attribute],
) -> Result<(), MetaError> {
    validate_attributes(new)?;
    check_key_kept("partition key", &table.partition_key, current, new)?;
    if let Some(sort_key) = &table.sort_key {
        check_key_kept("sort key", sort_key, current, new)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{AttributeType, TableStatus};

    fn attr(name: &str, t: AttributeType) -> Attribute {
        Attribute {
            name: name.into(),
            attr_type: t,
        }
    }

    fn spec() -> TableSpec {
        TableSpec {
            table_name: "orders".into(),
            partition_key: "pk".into(),
            sort_key: Some("sk".into()),
            capacity: Capacity {
                mode: CapacityMode::Provisioned,
                read_units: 10,
                write_units: 5,
            },
            attributes: vec![attr("pk", AttributeType::S), attr("sk", AttributeType::N)],
        }
    }

    fn table() -> Table {
        let s = spec();
        Table {
            table_id: 1,
            table_name: s.table_name,
            partition_key: s.partition_key,
            sort_key: s.sort_key,
            status: TableStatus::Active,
            capacity: s.capacity,
            schema_version_id: 1,
            created_at_ms: 0,
            status_changed_at_ms: 0,
        }
    }

    type Mutation<T> = Box<dyn Fn(&mut T)>;

    fn is_invalid<T: std::fmt::Debug>(r: Result<T, MetaError>) -> bool {
        matches!(r, Err(MetaError::Invalid(_)))
    }

    #[test]
    fn table_names() {
        assert!(validate_table_name("abc").is_ok());
        assert!(validate_table_name("A-b_c.9").is_ok());
        assert!(validate_table_name(&"x".repeat(TABLE_NAME_MAX_LEN)).is_ok());
        assert!(is_invalid(validate_table_name("ab")));
        assert!(is_invalid(validate_table_name("")));
        assert!(is_invalid(validate_table_name(
            &"x".repeat(TABLE_NAME_MAX_LEN + 1)
        )));
        assert!(is_invalid(validate_table_name("has space")));
        assert!(is_invalid(validate_table_name("tab/le")));
        assert!(is_invalid(validate_table_name("tablé")));
    }

    #[test]
    fn attribute_names() {
        assert!(validate_attribute_name("a").is_ok());
        assert!(validate_attribute_name("ünïcode ok").is_ok());
        assert!(validate_attribute_name(&"a".repeat(ATTRIBUTE_NAME_MAX_LEN)).is_ok());
        assert!(is_invalid(validate_attribute_name("")));
        assert!(is_invalid(validate_attribute_name(
            &"a".repeat(ATTRIBUTE_NAME_MAX_LEN + 1)
        )));
        assert!(is_invalid(validate_attribute_name("a\nb")));
    }

    #[test]
    fn attribute_lists() {
        let many: Vec<_> = (0..=MAX_ATTRIBUTES)
            .map(|i| attr(&format!("a{i}"), AttributeType::S))
            .collect();
        assert!(validate_attributes(&many[..MAX_ATTRIBUTES]).is_ok());
        assert!(is_invalid(validate_attributes(&many)));
        let dup = vec![attr("a", AttributeType::S), attr("a", AttributeType::N)];
        assert!(is_invalid(validate_attributes(&dup)));
    }

    #[test]
    fn capacity_requests() {
        let req = |mode, r, w| CapacityRequest {
            mode,
            read_units: r,
            write_units: w,
        };
        use CapacityMode::*;
        let c = capacity_from_request(&req(Provisioned, Some(3), Some(4))).unwrap();
        assert_eq!((c.read_units, c.write_units), (3, 4));
        let c = capacity_from_request(&req(OnDemand, None, None)).unwrap();
        assert_eq!((c.mode, c.read_units, c.write_units), (OnDemand, 0, 0));
        assert!(is_invalid(capacity_from_request(&req(
            Provisioned,
            None,
            Some(1)
        ))));
        assert!(is_invalid(capacity_from_request(&req(
            Provisioned,
            Some(1),
            None
        ))));
        assert!(is_invalid(capacity_from_request(&req(
            Provisioned,
            Some(0),
            Some(1)
        ))));
        assert!(is_invalid(capacity_from_request(&req(
            Provisioned,
            Some(1),
            Some(0)
        ))));
        let over = Some(MAX_CAPACITY_UNITS + 1);
        assert!(is_invalid(capacity_from_request(&req(
            Provisioned,
            over,
            Some(1)
        ))));
        let max = Some(MAX_CAPACITY_UNITS);
        assert!(capacity_from_request(&req(Provisioned, max, max)).is_ok());
        assert!(is_invalid(capacity_from_request(&req(
            OnDemand,
            Some(1),
            None
        ))));
        assert!(is_invalid(capacity_from_request(&req(
            OnDemand,
            None,
            Some(1)
        ))));
    }

    #[test]
    fn on_demand_capacity_must_have_zero_units() {
        let c = Capacity {
            mode: CapacityMode::OnDemand,
            read_units: 1,
            write_units: 0,
        };
        assert!(is_invalid(validate_capacity(&c)));
    }

    #[test]
    fn specs() {
        assert!(validate_spec(&spec()).is_ok());
        let no_sort = TableSpec {
            sort_key: None,
            ..spec()
        };
        assert!(validate_spec(&no_sort).is_ok());
        let cases: Vec<Mutation<TableSpec>> = vec![
            Box::new(|s| s.table_name = "x".into()),
            Box::new(|s| s.partition_key = "missing".into()),
            Box::new(|s| s.sort_key = Some("missing".into())),
            Box::new(|s| s.sort_key = Some("pk".into())),
            Box::new(|s| s.attributes[0].attr_type = AttributeType::Bool),
            Box::new(|s| s.attributes[1].attr_type = AttributeType::L),
            Box::new(|s| s.attributes.push(attr("pk", AttributeType::S))),
            Box::new(|s| s.attributes.push(attr("", AttributeType::S))),
            Box::new(|s| s.capacity.read_units = 0),
            Box::new(|s| s.capacity.mode = CapacityMode::OnDemand),
        ];
        for (i, mutate) in cases.iter().enumerate() {
            let mut s = spec();
            mutate(&mut s);
            assert!(is_invalid(validate_spec(&s)), "case {i}: {s:?}");
        }
    }

    #[test]
    fn schema_compatibility() {
        let t = table();
        let cur = spec().attributes;
        let mut more = cur.clone();
        more.push(attr("extra", AttributeType::M));
        assert!(check_schema_compatible(&t, &cur, &more).is_ok());
        assert!(check_schema_compatible(&t, &more, &cur).is_ok());

        let incompatible = |new: Vec<Attribute>| {
            matches!(
                check_schema_compatible(&t, &cur, &new),
                Err(MetaError::IncompatibleSchema(_))
            )
        };
        assert!(incompatible(vec![attr("sk", AttributeType::N)]));
        assert!(incompatible(vec![attr("pk", AttributeType::S)]));
        assert!(incompatible(vec![
            attr("pk", AttributeType::N),
            attr("sk", AttributeType::N)
        ]));
        assert!(incompatible(vec![
            attr("pk", AttributeType::S),
            attr("sk", AttributeType::S)
        ]));

        let mut dup = cur.clone();
        dup.push(attr("pk", AttributeType::S));
        assert!(is_invalid(check_schema_compatible(&t, &cur, &dup)));
    }
}
