//! The mapping forms on a new company, against a real PostgreSQL and the sandbox's Pipedrive and
//! Brevo over HTTP: the first forms fit the accounts and save as shown; lists are made in Brevo
//! in one folder, never twice; each mistake is placed on its row and nothing is saved; the
//! first-run checklist follows along.

use pipebridge::accounts::{self, Member};
use pipebridge::checklist::{self, Connection, FirstSync};
use pipebridge::connections::{self, Providers};
use pipebridge::domain::{CompanyName, Email, Password};
use pipebridge::mapping::forms::{self, FormSaveError, Place, Shown, Submitted};
use pipebridge::mapping::lists::{self, ListRole};
use pipebridge::mapping::{Lists, store};
use pipebridge::pipedrive::limits::Registry;
use pipebridge::secrets::{Secret, SecretKey};
use pipebridge_sandbox::brevo::DEFAULT_API_KEY;
use pipebridge_sandbox::pipedrive::DEFAULT_API_TOKEN;
use serde_json::Value;
use sqlx::PgPool;

struct Setup {
    sb: pipebridge_sandbox::Running,
    member: Member,
    key: SecretKey,
    providers: Providers,
    limits: Registry,
}

impl Setup {
    async fn new(pool: &PgPool) -> Self {
        let mut config = pipebridge_sandbox::Config::default();
        config.brevo.rate_limits = false;
        let sb = pipebridge_sandbox::start(config).await.unwrap();
        let done = accounts::sign_up(
            pool,
            &Email::parse("owner@example.com").unwrap(),
            Password::parse_new("correct horse battery").unwrap(),
            &CompanyName::parse("Acme").unwrap(),
        )
        .await
        .unwrap();
        let member = accounts::authorize(pool, done.user_id, done.tenant_id).await.unwrap();
        let mut providers = Providers::sandbox("http://127.0.0.1:3000");
        providers.pipedrive_oauth.server = sb.pipedrive_url.clone();
        providers.pipedrive_api = sb.pipedrive_url.clone();
        providers.brevo_api = sb.brevo_url.clone();
        Setup {
            sb,
            member,
            key: SecretKey::generate(),
            providers,
            limits: Registry::new(80, 1_000_000, 0.1),
        }
    }

    async fn connect(&self, pool: &PgPool) {
        connections::connect_pipedrive_token(
            pool,
            &self.key,
            &self.providers,
            &self.member,
            Secret::new(DEFAULT_API_TOKEN),
            "sandbox",
        )
        .await
        .unwrap();
        connections::connect_brevo(
            pool,
            &self.key,
            &self.providers,
            &self.member,
            Secret::new(DEFAULT_API_KEY),
        )
        .await
        .unwrap();
    }

    async fn forms(&self, pool: &PgPool) -> forms::Forms {
        match forms::load(pool, &self.key, &self.providers, &self.limits, &self.member)
            .await
            .unwrap()
        {
            Shown::Ready(f) => f,
            Shown::Unavailable(why) => panic!("forms unavailable: {why}"),
        }
    }

    async fn save(
        &self,
        pool: &PgPool,
        submitted: Submitted,
    ) -> Result<forms::FormSaved, FormSaveError> {
        forms::save(pool, &self.key, &self.providers, &self.limits, &self.member, submitted).await
    }

    /// Brevo's own answer (the sandbox's API, plain JSON).
    async fn brevo_get(&self, path: &str) -> Value {
        reqwest::Client::new()
            .get(format!("{}{path}", self.sb.brevo_url))
            .header("api-key", DEFAULT_API_KEY)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    async fn brevo_lists(&self) -> Vec<(i64, String, i64)> {
        let v = self.brevo_get("/v3/contacts/lists?limit=50").await;
        v["lists"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| {
                (
                    l["id"].as_i64().unwrap(),
                    l["name"].as_str().unwrap().to_owned(),
                    l["folderId"].as_i64().unwrap(),
                )
            })
            .collect()
    }
}

fn submitted(f: &forms::Forms) -> Submitted {
    Submitted {
        lists: f.lists,
        person: f.person.clone(),
        stages: f.stages.iter().map(|s| (s.key.clone(), s.list)).collect(),
    }
}

async fn versions(pool: &PgPool, member: &Member) -> usize {
    store::versions(pool, member).await.unwrap().len()
}

#[sqlx::test(migrator = "pipebridge::db::MIGRATOR")]
async fn a_first_mapping_from_the_forms_with_lists_made_in_brevo(pool: PgPool) {
    let s = Setup::new(&pool).await;
    let c = checklist::checklist(&pool, &s.member).await.unwrap();
    assert_eq!(
        (c.pipedrive, c.brevo, c.mapping, c.first_sync),
        (Connection::Missing, Connection::Missing, None, FirstSync::NotStarted)
    );
    assert!(matches!(
        forms::load(&pool, &s.key, &s.providers, &s.limits, &s.member).await.unwrap(),
        Shown::Unavailable(_)
    ));
    s.connect(&pool).await;
    let c = checklist::checklist(&pool, &s.member).await.unwrap();
    assert_eq!(
        (c.pipedrive, c.brevo, c.mapping),
        (Connection::Connected, Connection::Connected, None)
    );

    // The first forms: the seed's person rows in the terms of the real fields, no list anywhere.
    let f = s.forms(&pool).await;
    assert_eq!(f.version, None);
    assert_eq!(f.lists, Lists::default());
    assert!(f.stages.iter().all(|r| r.list.is_none()));
    assert!(f.stages.len() > 2, "every real stage, then won and lost");
    assert!(f.person.iter().all(|(p, _)| p != "email"), "the key row is not a row of the form");
    let lead_source = f
        .choices
        .paths
        .iter()
        .find(|(_, l)| l.starts_with("Lead source"))
        .expect("the sandbox's custom field")
        .0
        .clone();
    assert!(
        f.person.iter().any(|(p, a)| *p == lead_source && a == "LEAD_SOURCE"),
        "{:?}",
        f.person
    );
    let brevo_lists_before = s.brevo_lists().await.len();

    // The suggested lists: one folder, four lists, made once.
    let stage_keys: Vec<String> = f.stages.iter().map(|r| r.key.clone()).collect();
    let suggested =
        lists::suggested(&pool, &s.key, &s.limits, &s.member, &stage_keys).await.unwrap();
    let by_role = |s: &lists::Suggested| {
        let lists::Suggested { all_contacts, qualified_leads, customers, churned, .. } = s.clone();
        vec![
            (ListRole::AllContacts, all_contacts),
            (ListRole::QualifiedLeads, qualified_leads),
            (ListRole::Customers, customers),
            (ListRole::Churned, churned),
        ]
    };
    let made = by_role(&suggested);
    assert_eq!(made.iter().map(|(r, _)| *r).collect::<Vec<_>>(), ListRole::ALL.to_vec());
    assert!(made.iter().all(|(_, m)| !m.existed));
    assert_eq!(made[2].1.name, "Pipedrive — Customers");
    let folders = s.brevo_get("/v3/contacts/folders?limit=50").await;
    let ours: Vec<i64> = folders["folders"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["name"] == "Pipedrive")
        .map(|f| f["id"].as_i64().unwrap())
        .collect();
    assert_eq!(ours.len(), 1, "{folders}");
    let in_brevo = s.brevo_lists().await;
    assert_eq!(in_brevo.len(), brevo_lists_before + 4);
    assert!(made.iter().all(|(_, m)| {
        in_brevo
            .iter()
            .any(|(id, name, folder)| *id == m.id && *name == m.name && *folder == ours[0])
    }));
    let again =
        by_role(&lists::suggested(&pool, &s.key, &s.limits, &s.member, &stage_keys).await.unwrap());
    assert!(again.iter().all(|(_, m)| m.existed));
    assert_eq!(
        again.iter().map(|(_, m)| m.id).collect::<Vec<_>>(),
        made.iter().map(|(_, m)| m.id).collect::<Vec<_>>()
    );
    // One list by name: a new one joins the same folder; an existing name is taken, not doubled.
    let demo =
        lists::create(&pool, &s.key, &s.limits, &s.member, "  Pipedrive — Demo ").await.unwrap();
    assert_eq!((demo.name.as_str(), demo.existed), ("Pipedrive — Demo", false));
    assert_eq!(
        lists::create(&pool, &s.key, &s.limits, &s.member, "pipedrive — demo").await.unwrap().id,
        demo.id
    );
    let in_brevo = s.brevo_lists().await;
    assert_eq!(in_brevo.len(), brevo_lists_before + 5);
    assert_eq!(in_brevo.iter().find(|(id, _, _)| *id == demo.id).unwrap().2, ours[0]);
    assert!(matches!(
        lists::create(&pool, &s.key, &s.limits, &s.member, "   ").await,
        Err(lists::ListError::Invalid(_))
    ));

    // Saved as the forms hold them after "Use suggested lists", with one attribute and one stage
    // changed by the person, and one stage left at none.
    let id = |role: ListRole| made.iter().find(|(r, _)| *r == role).unwrap().1.id;
    let mut sub = submitted(&f);
    sub.lists = Lists {
        all_contacts: Some(id(ListRole::AllContacts)),
        qualified_leads: Some(id(ListRole::QualifiedLeads)),
        customers: Some(id(ListRole::Customers)),
        churned: Some(id(ListRole::Churned)),
    };
    // Every stage row gets the list of what it makes a person.
    for (key, list) in sub.stages.iter_mut() {
        let expected = match key.as_str() {
            "won" => id(ListRole::Customers),
            "lost" => id(ListRole::Churned),
            _ => id(ListRole::QualifiedLeads),
        };
        assert!(
            suggested.stages.contains(&(key.clone(), expected)),
            "{key}: {:?}",
            suggested.stages
        );
        *list = Some(expected);
    }
    assert_eq!(suggested.stages.len(), sub.stages.len());
    sub.stages[0].1 = Some(demo.id);
    sub.stages[1].1 = None;
    let name_row = sub.person.iter().position(|(p, _)| p == "name").unwrap();
    sub.person[name_row].1 = "full_name".into();
    let saved = s.save(&pool, sub.clone()).await.unwrap();
    assert_eq!(saved.version, 1);
    assert!(
        saved
            .warnings
            .iter()
            .any(|w| w.place == Place::Person(name_row) && w.message.contains("FULL_NAME")),
        "{:?}",
        saved.warnings
    );

    // Reloaded, the forms show what was saved: the key row kept, the stage left at none is none.
    let back = s.forms(&pool).await;
    assert_eq!(back.version, Some(1));
    assert_eq!(back.lists, sub.lists);
    assert_eq!(back.person[name_row], ("name".to_owned(), "FULL_NAME".to_owned()));
    assert_eq!(back.stages.iter().map(|r| (r.key.clone(), r.list)).collect::<Vec<_>>(), sub.stages);
    let (_, yaml) = store::current(&pool, &s.member).await.unwrap().unwrap();
    assert!(yaml.contains("email: email"), "{yaml}");
    let c = checklist::checklist(&pool, &s.member).await.unwrap();
    assert_eq!(c.mapping, Some(1));
    assert!(!c.done());
}

#[sqlx::test(migrator = "pipebridge::db::MIGRATOR")]
async fn each_mistake_is_placed_on_its_row_and_nothing_is_saved(pool: PgPool) {
    let s = Setup::new(&pool).await;
    s.connect(&pool).await;
    let f = s.forms(&pool).await;
    let customers = lists::create(&pool, &s.key, &s.limits, &s.member, "Pipedrive — Customers")
        .await
        .unwrap()
        .id;
    let mut good = submitted(&f);
    good.lists.customers = Some(customers);
    let row = |sub: &Submitted, path: &str| sub.person.iter().position(|(p, _)| p == path).unwrap();
    let refused = |r: Result<forms::FormSaved, FormSaveError>| match r {
        Err(FormSaveError::Refused(problems)) => problems,
        other => panic!("expected a refusal, got {other:?}"),
    };

    // An attribute name Brevo can't take.
    let mut bad = good.clone();
    let first = row(&bad, "first_name");
    bad.person[first].1 = "first name".into();
    let problems = refused(s.save(&pool, bad).await);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0].place, Place::Person(first));
    assert!(problems[0].message.contains("not a Brevo attribute name"), "{}", problems[0].message);

    // Two fields into one attribute: the second row says so.
    let mut bad = good.clone();
    let last = row(&bad, "last_name");
    bad.person[last].1 = "FIRSTNAME".into();
    let problems = refused(s.save(&pool, bad).await);
    let at_last: Vec<_> = problems.iter().filter(|p| p.place == Place::Person(last)).collect();
    assert_eq!(at_last.len(), 1, "{problems:?}");
    assert!(
        at_last[0].message.contains("already the target of first_name"),
        "{}",
        at_last[0].message
    );

    // A list deleted in Brevo meanwhile.
    let res = reqwest::Client::new()
        .delete(format!("{}/v3/contacts/lists/{customers}", s.sb.brevo_url))
        .header("api-key", DEFAULT_API_KEY)
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success());
    let problems = refused(s.save(&pool, good.clone()).await);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0].place, Place::List(ListRole::Customers));
    assert_eq!(problems[0].message, format!("Brevo has no list {customers}."));
    assert_eq!(versions(&pool, &s.member).await, 0, "nothing saved");

    // A viewer may not save.
    let viewer = Member { role: pipebridge::domain::Role::Viewer, ..s.member.clone() };
    let r = forms::save(&pool, &s.key, &s.providers, &s.limits, &viewer, submitted(&f)).await;
    assert!(matches!(r, Err(FormSaveError::Save(store::SaveError::Access(_)))), "{r:?}");
    assert!(matches!(
        lists::create(&pool, &s.key, &s.limits, &viewer, "x").await,
        Err(lists::ListError::Access(_))
    ));

    // And the forms as first shown save as they are.
    assert_eq!(s.save(&pool, submitted(&f)).await.unwrap().version, 1);
}
