//! A deterministic fake company: the same settings and size always give the same data.
//! Persons have several emails and phones; some have none, some share an email, some have phone
//! numbers that are not valid international numbers, some are deleted. Custom fields of each type.

use std::collections::BTreeMap;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use time::{Duration, OffsetDateTime};

use super::Settings;
use super::model::*;
use super::state::World;

const FIRST: &[&str] = &[
    "Ann", "Bob", "Chen", "Dana", "Emil", "Fatima", "Goran", "Hana", "Ivan", "Julia", "Kofi",
    "Lena", "Marek", "Nora", "Omar", "Priya", "Quinn", "Rosa", "Sven", "Tara",
];
const LAST: &[&str] = &[
    "Lee", "Smith", "Tamm", "Novak", "Garcia", "Müller", "Okafor", "Kask", "Rossi", "Silva",
    "Nguyen", "Berg", "Kowalski", "Haddad", "Ivanova",
];
const ORG_WORDS: &[&str] = &[
    "Acme",
    "Globex",
    "Initech",
    "Umbrella",
    "Stark",
    "Wayne",
    "Tyrell",
    "Hooli",
    "Vandelay",
    "Soylent",
    "Cyberdyne",
    "Aperture",
];
const ORG_SUFFIX: &[&str] = &["Ltd", "GmbH", "OÜ", "Inc", "SA", "AB"];

/// The custom fields the seed defines: (entity, label, v1 field_type, options).
const CUSTOM: &[(&str, &str, &str, &[&str])] = &[
    ("person", "Lead source", "enum", &["Website", "Referral", "Trade fair", "Cold call"]),
    ("person", "Interests", "set", &["Pricing", "Integrations", "Security", "Training"]),
    ("person", "Budget", "monetary", &[]),
    ("person", "Birthday", "date", &[]),
    ("person", "Home address", "address", &[]),
    ("person", "Second phone", "phone", &[]),
    ("person", "Background", "text", &[]),
    ("person", "Score", "double", &[]),
    ("person", "Nickname", "varchar", &[]),
    ("organization", "Industry", "enum", &["Software", "Retail", "Manufacturing", "Finance"]),
    ("organization", "Founded", "date", &[]),
    ("organization", "Annual revenue", "monetary", &[]),
    ("deal", "Campaign", "varchar", &[]),
    ("deal", "Contract type", "enum", &["Monthly", "Yearly", "One-off"]),
    ("deal", "Renewal date", "date", &[]),
];

fn hash_key(rng: &mut StdRng) -> String {
    (0..40).map(|_| char::from_digit(rng.gen_range(0..16), 16).unwrap_or('0')).collect()
}

pub fn generate(settings: &Settings, persons: usize, now: OffsetDateTime) -> World {
    let mut rng = StdRng::seed_from_u64(settings.rng_seed);
    let mut w = World::default();
    // Everything is dated in the year before the seed time, at whole seconds.
    let now = now.replace_nanosecond(0).unwrap_or(now);
    let year_ago = now - Duration::days(365);
    let when = |rng: &mut StdRng| year_ago + Duration::seconds(rng.gen_range(0..365 * 86_400));
    // Nothing is dated in the future: later changes land before the seed time.
    let past = |t: OffsetDateTime| t.min(now - Duration::seconds(1));

    w.company =
        Some(Company { id: 1_234, name: "Sandbox Company".into(), domain: "sandbox".into() });
    w.users = vec![
        User {
            id: 1,
            name: "Sandra Admin".into(),
            email: "admin@sandbox.test".into(),
            is_admin: true,
            api_token: settings.api_token.clone(),
        },
        User {
            id: 2,
            name: "Sam Seller".into(),
            email: "sam@sandbox.test".into(),
            is_admin: false,
            api_token: format!("{}-sam", settings.api_token),
        },
        User {
            id: 3,
            name: "Rita Rep".into(),
            email: "rita@sandbox.test".into(),
            is_admin: false,
            api_token: format!("{}-rita", settings.api_token),
        },
    ];

    // Two pipelines with their stages.
    let layout: [(&str, &[&str]); 2] = [
        ("Sales", &["Qualified", "Contact made", "Proposal made", "Negotiations started"]),
        ("Partnerships", &["Lead in", "Meeting arranged", "Agreement sent"]),
    ];
    let mut stage_ids = Vec::new();
    for (p, (pname, stages)) in layout.iter().enumerate() {
        let pid = p as u64 + 1;
        w.pipelines.put(Pipeline {
            id: pid,
            name: (*pname).into(),
            order_nr: p as u32,
            is_deleted: false,
            add_time: year_ago,
            update_time: year_ago,
        });
        for (s, sname) in stages.iter().enumerate() {
            let id = w.stages.take_id();
            w.stages.put(Stage {
                id,
                pipeline_id: pid,
                name: (*sname).into(),
                order_nr: s as u32 + 1,
                deal_probability: 100,
                is_deleted: false,
                add_time: year_ago,
                update_time: year_ago,
            });
            stage_ids.push((pid, id));
        }
    }

    // Fields: the built-ins each entity lists, then the custom ones with hash keys.
    let builtin = |id: u64, key: &str, name: &str, t: &str| Field {
        id,
        key: key.into(),
        name: name.into(),
        field_type: t.into(),
        options: vec![],
        is_custom: false,
        add_time: year_ago,
    };
    w.person_fields = vec![
        builtin(9001, "name", "Name", "varchar"),
        builtin(9002, "first_name", "First name", "varchar"),
        builtin(9003, "last_name", "Last name", "varchar"),
        builtin(9004, "email", "Email", "varchar"),
        builtin(9005, "phone", "Phone", "phone"),
        builtin(9006, "org_id", "Organization", "org"),
        builtin(9007, "owner_id", "Owner", "user"),
        builtin(9008, "label_ids", "Labels", "set"),
    ];
    w.organization_fields = vec![
        builtin(9101, "name", "Name", "varchar"),
        builtin(9102, "address", "Address", "address"),
        builtin(9103, "owner_id", "Owner", "user"),
    ];
    w.deal_fields = vec![
        builtin(9201, "title", "Title", "varchar"),
        builtin(9202, "value", "Value", "monetary"),
        // The dealFields spec lists no `stage` or `status` field types: both are enums here.
        Field {
            options: stage_ids
                .iter()
                .map(|(_, id)| (*id, w.stages.get(*id).map(|s| s.name.clone()).unwrap_or_default()))
                .collect(),
            ..builtin(9203, "stage_id", "Stage", "enum")
        },
        Field {
            options: vec![(1, "open".into()), (2, "won".into()), (3, "lost".into())],
            ..builtin(9204, "status", "Status", "enum")
        },
        builtin(9205, "person_id", "Contact person", "people"),
        builtin(9206, "org_id", "Organization", "org"),
    ];
    let mut option_id = 100;
    for (i, (entity, label, kind, options)) in CUSTOM.iter().enumerate() {
        let field = Field {
            id: 1_000 + i as u64,
            key: hash_key(&mut rng),
            name: (*label).into(),
            field_type: (*kind).into(),
            options: options
                .iter()
                .map(|o| {
                    option_id += 1;
                    (option_id, (*o).to_owned())
                })
                .collect(),
            is_custom: true,
            add_time: year_ago,
        };
        match *entity {
            "person" => w.person_fields.push(field),
            "organization" => w.organization_fields.push(field),
            _ => w.deal_fields.push(field),
        }
    }

    let org_count = (persons / 5).max(1);
    for id in 1..=org_count as u64 {
        let add = when(&mut rng);
        let name = format!(
            "{} {} {}",
            ORG_WORDS[rng.gen_range(0..ORG_WORDS.len())],
            id,
            ORG_SUFFIX[rng.gen_range(0..ORG_SUFFIX.len())]
        );
        let custom = custom_values(&w.organization_fields, &mut rng);
        w.organizations.put(Organization {
            id,
            name,
            owner_id: rng.gen_range(1..=3),
            address: Some(format!("{} Main Street, Tallinn, Estonia", rng.gen_range(1..200))),
            website: Some(format!("https://org{id}.example")),
            is_deleted: rng.gen_bool(0.02),
            visible_to: 3,
            label_ids: vec![],
            add_time: add,
            update_time: past(add + Duration::seconds(rng.gen_range(0..86_400 * 30))),
            custom_fields: custom,
        });
    }

    let mut last_email = String::new();
    for id in 1..=persons as u64 {
        let first = FIRST[rng.gen_range(0..FIRST.len())];
        let last = LAST[rng.gen_range(0..LAST.len())];
        let add = when(&mut rng);
        let roll: f64 = rng.r#gen();
        let mut emails = Vec::new();
        if roll < 0.08 {
            // no email at all
        } else if roll < 0.12 && !last_email.is_empty() {
            emails.push(Labeled { value: last_email.clone(), primary: true, label: "work".into() }); // shared
        } else {
            let e = format!(
                "{}.{}.{id}@example.com",
                first.to_lowercase(),
                last.to_lowercase().replace('ü', "u")
            );
            last_email = e.clone();
            emails.push(Labeled { value: e, primary: true, label: "work".into() });
            if rng.gen_bool(0.25) {
                emails.push(Labeled {
                    value: format!("{}{id}@home.example", first.to_lowercase()),
                    primary: false,
                    label: "home".into(),
                });
            }
        }
        let mut phones = Vec::new();
        let p: f64 = rng.r#gen();
        if p < 0.10 {
            phones.push(Labeled {
                value: format!("555-{:04}", rng.gen_range(0..10_000)),
                primary: true,
                label: "work".into(),
            }); // not international
        } else if p < 0.85 {
            phones.push(Labeled {
                value: format!("+3725{:07}", id % 10_000_000),
                primary: true,
                label: "mobile".into(),
            });
            if rng.gen_bool(0.2) {
                phones.push(Labeled {
                    value: format!("+4930{:08}", id % 100_000_000),
                    primary: false,
                    label: "work".into(),
                });
            }
        }
        let custom = custom_values(&w.person_fields, &mut rng);
        w.persons.put(Person {
            id,
            name: format!("{first} {last}"),
            first_name: Some(first.into()),
            last_name: Some(last.into()),
            owner_id: rng.gen_range(1..=3),
            org_id: if rng.gen_bool(0.8) {
                Some(rng.gen_range(1..=org_count as u64))
            } else {
                None
            },
            emails,
            phones,
            is_deleted: rng.gen_bool(0.03),
            visible_to: 3,
            label_ids: vec![],
            marketing_status: None,
            add_time: add,
            update_time: past(add + Duration::seconds(rng.gen_range(0..86_400 * 60))),
            custom_fields: custom,
        });
    }

    let deals = settings.seed_deals.unwrap_or(persons);
    for id in 1..=deals as u64 {
        let add = when(&mut rng);
        let (pipeline_id, stage_id) = stage_ids[rng.gen_range(0..stage_ids.len())];
        let status = match rng.gen_range(0..20) {
            0..=11 => "open",
            12..=16 => "won",
            _ => "lost",
        };
        let closed = (status != "open").then(|| past(add + Duration::days(rng.gen_range(1..60))));
        let person_id = (persons > 0).then(|| rng.gen_range(1..=persons as u64));
        let custom = custom_values(&w.deal_fields, &mut rng);
        w.deals.put(Deal {
            id,
            title: format!("Deal {id}"),
            creator_user_id: 1,
            owner_id: rng.gen_range(1..=3),
            person_id,
            org_id: person_id.and_then(|p| w.persons.get(p)).and_then(|p| p.org_id),
            pipeline_id,
            stage_id,
            value: f64::from(rng.gen_range(1..500u32)) * 100.0,
            currency: if rng.gen_bool(0.7) { "EUR".into() } else { "USD".into() },
            status: status.into(),
            is_deleted: rng.gen_bool(0.01),
            probability: None,
            lost_reason: (status == "lost").then(|| "Price".into()),
            visible_to: 3,
            expected_close_date: Some((add + Duration::days(30)).date().to_string()),
            add_time: add,
            update_time: past(closed.unwrap_or(add) + Duration::seconds(rng.gen_range(0..3_600))),
            stage_change_time: Some(add),
            won_time: closed.filter(|_| status == "won"),
            lost_time: closed.filter(|_| status == "lost"),
            close_time: closed,
            custom_fields: custom,
        });
    }

    const TYPES: [&str; 4] = ["call", "meeting", "email", "task"];
    for id in 1..=settings.seed_activities.unwrap_or(persons * 2) as u64 {
        let add = when(&mut rng);
        let person_id = (persons > 0).then(|| rng.gen_range(1..=persons as u64));
        let done = rng.gen_bool(0.6);
        let kind = TYPES[rng.gen_range(0..TYPES.len())];
        w.activities.put(Activity {
            id,
            subject: format!("{} {id}", kind[..1].to_uppercase() + &kind[1..]),
            kind: kind.into(),
            owner_id: rng.gen_range(1..=3),
            creator_user_id: 1,
            person_id,
            org_id: person_id.and_then(|p| w.persons.get(p)).and_then(|p| p.org_id),
            deal_id: if rng.gen_bool(0.5) && deals > 0 {
                Some(rng.gen_range(1..=deals as u64))
            } else {
                None
            },
            lead_id: None,
            due_date: Some(add.date().to_string()),
            due_time: Some("10:00".into()),
            duration: Some("00:30".into()),
            done,
            busy: true,
            note: None,
            is_deleted: rng.gen_bool(0.01),
            add_time: add,
            update_time: past(add + Duration::seconds(rng.gen_range(0..86_400))),
            marked_as_done_time: done.then_some(add),
        });
    }

    for _ in 0..(persons / 10).max(usize::from(persons > 0)) {
        let add = when(&mut rng);
        let id = uuid::Builder::from_random_bytes(rng.r#gen()).into_uuid().to_string();
        w.leads.push(Lead {
            id,
            title: format!("Lead {}", w.leads.len() + 1),
            owner_id: 1,
            creator_id: 1,
            person_id: Some(rng.gen_range(1..=persons.max(1) as u64)),
            organization_id: None,
            value: rng
                .gen_bool(0.5)
                .then(|| (f64::from(rng.gen_range(1..100u32)) * 50.0, "EUR".to_owned())),
            label_ids: vec![],
            source_name: "API".into(),
            is_archived: false,
            was_seen: false,
            expected_close_date: None,
            add_time: add,
            update_time: add,
            is_deleted: false,
        });
    }
    w.leads.sort_by_key(|l| l.add_time);
    w.next_webhook_id = 1;
    w
}

/// Random values (v2 form) for about half of the custom fields.
fn custom_values(fields: &[Field], rng: &mut StdRng) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    for f in fields.iter().filter(|f| f.is_custom) {
        if !rng.gen_bool(0.5) {
            continue;
        }
        let v = match f.field_type.as_str() {
            "enum" => json!(f.options[rng.gen_range(0..f.options.len())].0),
            "set" => {
                let picked: Vec<u64> =
                    f.options.iter().filter(|_| rng.gen_bool(0.4)).map(|o| o.0).collect();
                if picked.is_empty() {
                    continue;
                }
                json!(picked)
            }
            "monetary" => {
                json!({"value": rng.gen_range(1..1000) * 100, "currency": if rng.gen_bool(0.5) { "EUR" } else { "USD" }})
            }
            "date" => json!(format!(
                "{}-{:02}-{:02}",
                rng.gen_range(1960..2010),
                rng.gen_range(1..=12),
                rng.gen_range(1..=28)
            )),
            "address" => {
                json!({"value": "Narva mnt 5, Tallinn", "locality": "Tallinn", "country": "Estonia", "route": "Narva mnt", "street_number": "5", "postal_code": "10117"})
            }
            "phone" => json!(format!("+3725{:07}", rng.gen_range(0..10_000_000))),
            "double" => json!(rng.gen_range(0..100)),
            _ => json!(format!("{} {}", f.name, rng.gen_range(1..1000))),
        };
        out.insert(f.key.clone(), v);
    }
    out
}
