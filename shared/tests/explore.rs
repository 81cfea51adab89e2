use shared::command::*;
use shared::model::*;
use shared::placement::*;
use shared::state::MetaState;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E3779B97F4A7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58476D1CE4E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D049BB133111EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

#[test]
fn explore() {
    let mut rng = Rng(42);
    let mut worst = std::collections::BTreeMap::new();
    for _case in 0..3000 {
        let n = 1 + rng.below(30) as usize;
        let z = rng.below(6) as usize;
        let equal = rng.below(2) == 0;
        let rf = 1 + rng.below(5) as usize;
        let mut s = MetaState::new();
        for i in 0..n {
            let zone = if z == 0 {
                String::new()
            } else if equal {
                format!("z{}", i % z)
            } else {
                format!("z{}", rng.below(z as u64))
            };
            s.apply(&MetaCommand::RegisterNode {
                node_id: i as u64 + 1,
                endpoint: "e".into(),
                peer_addr: "p".into(),
                zone,
                incarnation: 1,
                now_ms: 0,
            })
            .unwrap();
        }
        let cfg = PlacementConfig {
            replication_factor: rf,
            ..Default::default()
        };
        let tables = 1 + rng.below(10);
        for t in 0..tables {
            let cap = Capacity {
                mode: CapacityMode::Provisioned,
                read_units: 1 + rng.below(24000),
                write_units: 1 + rng.below(8000),
            };
            let spec = TableSpec {
                table_name: format!("tab{t}"),
                partition_key: "pk".into(),
                sort_key: None,
                capacity: cap,
                attributes: vec![Attribute {
                    name: "pk".into(),
                    attr_type: AttributeType::S,
                }],
            };
            let MetaOutcome::TableCreated { table_id } = s
                .apply(&MetaCommand::CreateTable { spec, now_ms: 0 })
                .unwrap()
            else {
                panic!()
            };
            let plan = plan_new_table(&s, table_id, &cfg).unwrap();
            s.apply(&MetaCommand::AssignPartitions {
                table_id,
                partitions: plan.assignments,
            })
            .unwrap();
        }
        let loads: Vec<usize> = s.nodes().map(|n| n.partition_ids.len()).collect();
        let mut prim = std::collections::BTreeMap::new();
        for nd in s.nodes() {
            prim.insert(nd.node_id, 0usize);
        }
        for p in s.partitions() {
            *prim.get_mut(&p.primary_node_id).unwrap() += 1;
        }
        let spread = |v: &Vec<usize>| v.iter().max().unwrap() - v.iter().min().unwrap();
        let pv: Vec<usize> = prim.values().copied().collect();
        let zones: std::collections::BTreeSet<_> = s.nodes().map(|n| n.zone.clone()).collect();
        let zc = zones.len();
        let sizes: Vec<usize> = zones
            .iter()
            .map(|zz| s.nodes().filter(|n| &n.zone == zz).count())
            .collect();
        let eq = sizes.iter().all(|&x| x == sizes[0]);
        let key = (
            if zc <= 1 {
                "onezone"
            } else if eq {
                "equal"
            } else {
                "unequal"
            },
            rf.min(n),
        );
        let e = worst.entry(key).or_insert((0, 0));
        e.0 = e.0.max(spread(&loads));
        e.1 = e.1.max(spread(&pv));
    }
    for (k, v) in worst {
        println!("{k:?}: load spread {} primary spread {}", v.0, v.1);
    }
}
