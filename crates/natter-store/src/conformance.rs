//! The storage conformance suite: one set of checks that every backend
//! passes. A backend crate runs it with [`conformance_tests!`], giving a
//! [`Harness`] that makes fresh databases, so the same behaviour is proven
//! on SQLite and PostgreSQL alike.
//!
//! The checks use only the [`Store`] trait; anything a backend needs to
//! pass them belongs in the backend, never in a special case here.

use std::collections::HashSet;
use std::sync::Arc;

use chrono::{DurationRound, TimeDelta, Utc};
use natter_types::*;

use crate::*;

/// Makes databases for the suite.
#[async_trait]
pub trait Harness: Send + Sync + Sized + 'static {
    /// A new, empty database (a fresh file, schema or database).
    async fn fresh() -> Option<Self>;
    /// Opens a store on this harness's database. Called more than once, it
    /// returns independent stores over the same data, as after a restart.
    async fn open(&self) -> Arc<dyn Store>;
}

/// The current time at the precision every backend keeps (microseconds).
pub fn now() -> Timestamp {
    Utc::now()
        .duration_trunc(TimeDelta::microseconds(1))
        .unwrap()
}

/// Credentials that are valid in form, for tests that never log in.
pub fn creds(seed: u8) -> Credentials {
    Credentials {
        salt: vec![seed; 16],
        iterations: 4096,
        sha1: ScramKeys {
            stored_key: vec![seed; 20],
            server_key: vec![seed.wrapping_add(1); 20],
        },
        sha256: ScramKeys {
            stored_key: vec![seed; 32],
            server_key: vec![seed.wrapping_add(1); 32],
        },
    }
}

/// Creates the account `name`; for backend-specific tests too.
pub async fn user(store: &dyn Store, name: &str) -> User {
    store
        .create_user(NewUser {
            username: Username::parse(name).unwrap(),
            display_name: None,
            credentials: creds(1),
            now: now(),
        })
        .await
        .unwrap()
}

fn body(s: &str) -> Body {
    Body::parse(s.to_owned(), Body::DEFAULT_MAX_BYTES).unwrap()
}

/// A new message to append, stamped now.
pub fn new_message(
    conv: ConversationId,
    sender: UserId,
    client_id: &str,
    text: &str,
) -> NewMessage {
    NewMessage {
        id: MessageId::new(),
        conversation_id: conv,
        sender,
        client_id: ClientId::parse(client_id).unwrap(),
        body: body(text),
        now: now(),
    }
}

/// A group "Team" of `owner` and `members`, created now.
pub async fn group(store: &dyn Store, owner: &User, members: &[&User]) -> Conversation {
    store
        .create_group(NewGroup {
            id: ConversationId::new(),
            title: GroupTitle::parse("Team").unwrap(),
            owner: owner.id,
            members: members.iter().map(|u| u.id).collect(),
            now: now(),
        })
        .await
        .unwrap()
}

fn session(user: UserId, hash: u8, expires_in: TimeDelta) -> NewSession {
    let created_at = now();
    NewSession {
        id: SessionId::new(),
        user_id: user,
        token_hash: [hash; 32],
        created_at,
        expires_at: created_at + expires_in,
        user_agent: Some("conformance".into()),
    }
}

pub async fn users(store: Arc<dyn Store>) {
    let store = &*store;
    store.ping().await.unwrap();
    let alice = store
        .create_user(NewUser {
            username: Username::parse("alice").unwrap(),
            display_name: Some(DisplayName::parse("Alice Liddell").unwrap()),
            credentials: creds(7),
            now: now(),
        })
        .await
        .unwrap();
    assert_eq!(alice.username.as_str(), "alice");
    assert_eq!(alice.display_name.as_deref(), Some("Alice Liddell"));

    let dup = store
        .create_user(NewUser {
            username: Username::parse("alice").unwrap(),
            display_name: None,
            credentials: creds(1),
            now: now(),
        })
        .await;
    assert!(
        matches!(dup, Err(StoreError::Conflict("username"))),
        "{dup:?}"
    );

    let found = store
        .user_by_username(&alice.username)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found, alice);
    assert_eq!(store.user_by_id(alice.id).await.unwrap().unwrap(), alice);
    assert!(
        store
            .user_by_username(&Username::parse("nobody").unwrap())
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        store.credentials(alice.id).await.unwrap().unwrap(),
        creds(7)
    );

    let renamed = store
        .set_display_name(alice.id, Some(DisplayName::parse("Al").unwrap()))
        .await
        .unwrap();
    assert_eq!(renamed.display_name.as_deref(), Some("Al"));
    let cleared = store.set_display_name(alice.id, None).await.unwrap();
    assert_eq!(cleared.display_name, None);
    assert!(matches!(
        store.set_display_name(UserId(i64::MAX), None).await,
        Err(StoreError::NotFound(_))
    ));

    let bob = user(store, "bob").await;
    let _albert = user(store, "albert").await;
    let b100 = user(store, "b100_x").await;
    store
        .set_display_name(bob.id, Some(DisplayName::parse("Bobby ALICEson").unwrap()))
        .await
        .unwrap();
    let names = |us: Vec<User>| {
        us.into_iter()
            .map(|u| u.username.into_string())
            .collect::<Vec<_>>()
    };
    // username prefix, or display name containing the query, any case
    assert_eq!(
        names(store.search_users("al", 10).await.unwrap()),
        ["albert", "alice", "bob"]
    );
    assert_eq!(
        names(store.search_users("AL", 1).await.unwrap()),
        ["albert"]
    );
    // LIKE wildcards in the query are literal
    assert_eq!(
        names(store.search_users("b1%", 10).await.unwrap()),
        Vec::<String>::new()
    );
    assert_eq!(
        names(store.search_users("b100_", 10).await.unwrap()),
        ["b100_x"]
    );
    assert_eq!(
        names(store.search_users("_", 10).await.unwrap()),
        Vec::<String>::new()
    );

    let some = store
        .users_by_username(&[
            bob.username.clone(),
            b100.username.clone(),
            Username::parse("ghost").unwrap(),
        ])
        .await
        .unwrap();
    assert_eq!(names(some), ["b100_x", "bob"]);
}

pub async fn sessions(store: Arc<dyn Store>) {
    let store = &*store;
    let alice = user(store, "alice").await;
    let bob = user(store, "bob").await;
    let s1 = store
        .create_session(session(alice.id, 1, TimeDelta::hours(1)))
        .await
        .unwrap();
    let s2 = store
        .create_session(session(alice.id, 2, TimeDelta::hours(2)))
        .await
        .unwrap();
    let expired = store
        .create_session(session(alice.id, 3, TimeDelta::seconds(-1)))
        .await
        .unwrap();
    let sb = store
        .create_session(session(bob.id, 4, TimeDelta::hours(1)))
        .await
        .unwrap();
    assert_eq!(s1.user_agent.as_deref(), Some("conformance"));

    let (found, who) = store.session_by_token(&[2; 32]).await.unwrap().unwrap();
    assert_eq!(found, s2);
    assert_eq!(who, alice);
    assert!(store.session_by_token(&[9; 32]).await.unwrap().is_none());
    // expiry is the caller's check, so an expired session is still found
    assert_eq!(
        store.session_by_token(&[3; 32]).await.unwrap().unwrap().0,
        expired
    );

    let listed: Vec<_> = store
        .list_sessions(alice.id, now())
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(listed, [s2.id, s1.id], "newest first, expired left out");

    assert!(
        !store.revoke_session(alice.id, sb.id).await.unwrap(),
        "not alice's session"
    );
    assert!(store.session_by_token(&[4; 32]).await.unwrap().is_some());
    assert!(store.session_valid(s1.id, now()).await.unwrap());
    assert!(
        !store.session_valid(expired.id, now()).await.unwrap(),
        "expired"
    );
    assert!(
        !store.session_valid(SessionId::new(), now()).await.unwrap(),
        "unknown"
    );
    assert!(store.revoke_session(alice.id, s1.id).await.unwrap());
    assert!(!store.session_valid(s1.id, now()).await.unwrap(), "revoked");
    assert!(!store.revoke_session(alice.id, s1.id).await.unwrap());
    assert!(store.session_by_token(&[1; 32]).await.unwrap().is_none());

    assert_eq!(store.purge_expired_sessions(now()).await.unwrap(), 1);
    assert!(store.session_by_token(&[3; 32]).await.unwrap().is_none());

    // changing credentials revokes every other session, atomically
    let s5 = store
        .create_session(session(alice.id, 5, TimeDelta::hours(1)))
        .await
        .unwrap();
    store
        .set_credentials(alice.id, creds(42), Some(s5.id))
        .await
        .unwrap();
    assert_eq!(
        store.credentials(alice.id).await.unwrap().unwrap(),
        creds(42)
    );
    let left: Vec<_> = store
        .list_sessions(alice.id, now())
        .await
        .unwrap()
        .into_iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(left, [s5.id]);
    assert_eq!(
        store.list_sessions(bob.id, now()).await.unwrap().len(),
        1,
        "bob untouched"
    );
    store
        .set_credentials(alice.id, creds(43), None)
        .await
        .unwrap();
    assert!(
        store
            .list_sessions(alice.id, now())
            .await
            .unwrap()
            .is_empty()
    );
}

pub async fn contacts(store: Arc<dyn Store>) {
    let store = &*store;
    let alice = user(store, "alice").await;
    let bob = user(store, "bob").await;
    let carol = user(store, "carol").await;

    let (c, created) = store
        .put_contact(alice.id, carol.id, None, ContactGroups::default(), now())
        .await
        .unwrap();
    assert!(created);
    assert_eq!(c.user.username.as_str(), "carol");
    assert!(c.groups.is_empty());

    let (b, created) = store
        .put_contact(
            alice.id,
            bob.id,
            Some(ContactName::parse("Bobby").unwrap()),
            ContactGroups::parse(["Work", "Friends"]).unwrap(),
            now(),
        )
        .await
        .unwrap();
    assert!(created);
    assert_eq!(b.name.as_deref(), Some("Bobby"));
    assert_eq!(b.groups, ["Work", "Friends"]);

    let (b2, created) = store
        .put_contact(
            alice.id,
            bob.id,
            None,
            ContactGroups::parse(["Family"]).unwrap(),
            now(),
        )
        .await
        .unwrap();
    assert!(!created, "an update, not a second entry");
    assert_eq!(b2.name, None);
    assert_eq!(b2.groups, ["Family"]);
    assert_eq!(b2.added_at, b.added_at, "updates keep the original date");

    let list = store.list_contacts(alice.id).await.unwrap();
    assert_eq!(
        list.iter()
            .map(|c| c.user.username.as_str())
            .collect::<Vec<_>>(),
        ["bob", "carol"]
    );
    assert!(
        store.list_contacts(bob.id).await.unwrap().is_empty(),
        "contacts are one-way"
    );

    assert!(store.remove_contact(alice.id, bob.id).await.unwrap());
    assert!(!store.remove_contact(alice.id, bob.id).await.unwrap());
    assert_eq!(store.list_contacts(alice.id).await.unwrap().len(), 1);
}

pub async fn direct_conversations(store: Arc<dyn Store>) {
    let alice = user(&*store, "alice").await;
    let bob = user(&*store, "bob").await;
    let (c1, created) = store
        .direct_conversation(alice.id, bob.id, now())
        .await
        .unwrap();
    assert!(created);
    assert_eq!(c1.kind, ConversationKind::Direct);
    assert_eq!(c1.last_seq, 0);
    assert_eq!(c1.title, None);
    let (c2, created) = store
        .direct_conversation(bob.id, alice.id, now())
        .await
        .unwrap();
    assert!(!created);
    assert_eq!(c1, c2, "one conversation per pair, in either order");

    let members = store.members(c1.id).await.unwrap();
    let mut names: Vec<_> = members.iter().map(|m| m.user.username.as_str()).collect();
    names.sort();
    assert_eq!(names, ["alice", "bob"]);
    assert!(
        members
            .iter()
            .all(|m| m.role == Role::Member && m.read_seq == 0)
    );
    assert_eq!(store.conversation(c1.id).await.unwrap().unwrap(), c1);
    assert!(
        store
            .conversation(ConversationId::new())
            .await
            .unwrap()
            .is_none()
    );

    // many concurrent first calls still make one conversation
    let carol = user(&*store, "carol").await;
    let dave = user(&*store, "dave").await;
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let store = store.clone();
            let (a, b) = if i % 2 == 0 {
                (carol.id, dave.id)
            } else {
                (dave.id, carol.id)
            };
            tokio::spawn(async move { store.direct_conversation(a, b, now()).await.unwrap() })
        })
        .collect();
    let mut ids = HashSet::new();
    let mut creations = 0;
    for t in tasks {
        let (c, created) = t.await.unwrap();
        ids.insert(c.id);
        creations += created as usize;
    }
    assert_eq!(ids.len(), 1);
    assert_eq!(creations, 1);
}

pub async fn groups(store: Arc<dyn Store>) {
    let store = &*store;
    let alice = user(store, "alice").await;
    let bob = user(store, "bob").await;
    let carol = user(store, "carol").await;
    let dave = user(store, "dave").await;

    // the owner and duplicates in the member list are ignored
    let g = group(store, &alice, &[&bob, &carol, &bob, &alice]).await;
    assert_eq!(g.kind, ConversationKind::Group);
    assert_eq!(g.title.as_deref(), Some("Team"));
    let roles = |ms: Vec<Member>| {
        ms.into_iter()
            .map(|m| (m.user.username.into_string(), m.role))
            .collect::<Vec<_>>()
    };
    let mut got = roles(store.members(g.id).await.unwrap());
    got.sort();
    assert_eq!(
        got,
        [
            ("alice".into(), Role::Owner),
            ("bob".into(), Role::Member),
            ("carol".into(), Role::Member)
        ]
    );
    assert_eq!(
        store.member_role(g.id, alice.id).await.unwrap(),
        Some(Role::Owner)
    );
    assert_eq!(store.member_role(g.id, dave.id).await.unwrap(), None);

    assert!(
        store
            .set_member(g.id, dave.id, Role::Member, now())
            .await
            .unwrap()
    );
    assert!(
        !store
            .set_member(g.id, bob.id, Role::Admin, now())
            .await
            .unwrap()
    );
    assert_eq!(
        store.member_role(g.id, bob.id).await.unwrap(),
        Some(Role::Admin)
    );
    assert!(matches!(
        store
            .set_member(ConversationId::new(), dave.id, Role::Member, now())
            .await,
        Err(StoreError::NotFound(_))
    ));

    // a new member's read marker starts at the last message
    for i in 0..3 {
        store
            .append_message(new_message(g.id, alice.id, &format!("g{i}"), "hi"))
            .await
            .unwrap();
    }
    let eve = user(store, "eve").await;
    store
        .set_member(g.id, eve.id, Role::Member, now())
        .await
        .unwrap();
    let eve_member = store
        .members(g.id)
        .await
        .unwrap()
        .into_iter()
        .find(|m| m.user.username.as_str() == "eve")
        .unwrap();
    assert_eq!(eve_member.read_seq, 3);

    assert!(store.remove_member(g.id, dave.id).await.unwrap());
    assert!(!store.remove_member(g.id, dave.id).await.unwrap());
    assert_eq!(store.member_role(g.id, dave.id).await.unwrap(), None);

    // the last owner leaving hands the group to the longest-standing admin
    assert!(store.remove_member(g.id, alice.id).await.unwrap());
    assert_eq!(
        store.member_role(g.id, bob.id).await.unwrap(),
        Some(Role::Owner)
    );
    // and with no admin, to the longest-standing member
    assert!(store.remove_member(g.id, bob.id).await.unwrap());
    assert_eq!(
        store.member_role(g.id, carol.id).await.unwrap(),
        Some(Role::Owner)
    );
    assert_eq!(
        store.member_role(g.id, eve.id).await.unwrap(),
        Some(Role::Member)
    );

    let renamed = store
        .rename_group(g.id, GroupTitle::parse("Renamed").unwrap())
        .await
        .unwrap();
    assert_eq!(renamed.title.as_deref(), Some("Renamed"));
    assert_eq!(renamed.last_seq, 3);
}

pub async fn append_and_dedupe(store: Arc<dyn Store>) {
    let store = &*store;
    let alice = user(store, "alice").await;
    let bob = user(store, "bob").await;
    let mallory = user(store, "mallory").await;
    let (c, _) = store
        .direct_conversation(alice.id, bob.id, now())
        .await
        .unwrap();

    let first = store
        .append_message(new_message(c.id, alice.id, "m-1", "hello"))
        .await
        .unwrap();
    assert!(first.created);
    assert_eq!(first.message.seq, 1);
    assert_eq!(first.message.sender.as_str(), "alice");
    assert_eq!(first.message.body.as_deref(), Some("hello"));
    assert_eq!(first.message.client_id, "m-1");
    let second = store
        .append_message(new_message(c.id, bob.id, "m-1", "hi alice"))
        .await
        .unwrap();
    assert!(second.created, "client ids are scoped by sender");
    assert_eq!(second.message.seq, 2);

    // lookups by id and by (sender, client id) find exactly that message
    assert_eq!(
        store.message_by_id(first.message.id).await.unwrap(),
        Some(first.message.clone())
    );
    assert_eq!(store.message_by_id(MessageId::new()).await.unwrap(), None);
    assert_eq!(
        store.message_by_client_id(bob.id, "m-1").await.unwrap(),
        Some(second.message.clone())
    );
    assert_eq!(
        store.message_by_client_id(alice.id, "m-1").await.unwrap(),
        Some(first.message.clone())
    );
    assert_eq!(
        store.message_by_client_id(mallory.id, "m-1").await.unwrap(),
        None
    );

    // a retry returns the original, with its id and time, and stores nothing
    let retry = store
        .append_message(new_message(c.id, alice.id, "m-1", "hello"))
        .await
        .unwrap();
    assert!(!retry.created);
    assert_eq!(retry.message, first.message);
    // the original is returned as stored, whatever the retry carries
    let changed = store
        .append_message(new_message(c.id, alice.id, "m-1", "changed"))
        .await
        .unwrap();
    assert!(!changed.created);
    assert_eq!(changed.message, first.message);
    let (other, _) = store
        .direct_conversation(alice.id, mallory.id, now())
        .await
        .unwrap();
    assert!(matches!(
        store
            .append_message(new_message(other.id, alice.id, "m-1", "hello"))
            .await,
        Err(StoreError::ClientIdReused)
    ));
    assert!(matches!(
        store
            .append_message(new_message(c.id, mallory.id, "x", "let me in"))
            .await,
        Err(StoreError::NotMember)
    ));
    assert!(matches!(
        store
            .append_message(new_message(ConversationId::new(), alice.id, "y", "void"))
            .await,
        Err(StoreError::NotFound(_))
    ));
    let third = store
        .append_message(new_message(c.id, alice.id, "m-2", "again"))
        .await
        .unwrap();
    assert_eq!(third.message.seq, 3, "failed appends leave no gap");

    let conv = store.conversation(c.id).await.unwrap().unwrap();
    assert_eq!(conv.last_seq, 3);
    assert_eq!(conv.last_activity_at, third.message.sent_at);
    // sending moves the sender's own read marker
    let members = store.members(c.id).await.unwrap();
    let marker = |name: &str| {
        members
            .iter()
            .find(|m| m.user.username.as_str() == name)
            .unwrap()
            .read_seq
    };
    assert_eq!(marker("alice"), 3);
    assert_eq!(marker("bob"), 2);
    assert_eq!(
        store.message(c.id, 1).await.unwrap().unwrap(),
        first.message
    );
    assert!(store.message(c.id, 4).await.unwrap().is_none());
}

/// Many writers into one conversation: every append gets its own number,
/// and the numbers are exactly 1..=n.
pub async fn concurrent_appends(store: Arc<dyn Store>) {
    const SENDERS: usize = 50;
    const EACH: usize = 20;
    let owner = user(&*store, "owner").await;
    let mut senders = Vec::new();
    for i in 0..SENDERS {
        senders.push(user(&*store, &format!("s{i}")).await);
    }
    let refs: Vec<&User> = senders.iter().collect();
    let g = group(&*store, &owner, &refs).await;
    let tasks: Vec<_> = senders
        .iter()
        .map(|s| {
            let store = store.clone();
            let (sid, conv) = (s.id, g.id);
            tokio::spawn(async move {
                let mut seqs = Vec::new();
                for j in 0..EACH {
                    let a = store
                        .append_message(new_message(conv, sid, &format!("c{j}"), "concurrent"))
                        .await
                        .unwrap();
                    seqs.push(a.message.seq);
                }
                seqs
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in tasks {
        let seqs = t.await.unwrap();
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "one sender's messages stay in order"
        );
        all.extend(seqs);
    }
    all.sort();
    assert_eq!(all, (1..=(SENDERS * EACH) as i64).collect::<Vec<_>>());
    let page = store
        .messages(
            g.id,
            HistoryQuery {
                before: None,
                after: None,
                limit: 100,
            },
        )
        .await
        .unwrap();
    assert_eq!(page.last().unwrap().seq, (SENDERS * EACH) as i64);
}

pub async fn history(store: Arc<dyn Store>) {
    let store = &*store;
    let alice = user(store, "alice").await;
    let bob = user(store, "bob").await;
    let (c, _) = store
        .direct_conversation(alice.id, bob.id, now())
        .await
        .unwrap();
    for i in 1..=25 {
        store
            .append_message(new_message(
                c.id,
                alice.id,
                &format!("h{i}"),
                &format!("n{i}"),
            ))
            .await
            .unwrap();
    }
    let seqs = |ms: Vec<Message>| ms.into_iter().map(|m| m.seq).collect::<Vec<_>>();
    let q = |before, after, limit| HistoryQuery {
        before,
        after,
        limit,
    };
    assert_eq!(
        seqs(store.messages(c.id, q(None, None, 5)).await.unwrap()),
        [21, 22, 23, 24, 25]
    );
    assert_eq!(
        seqs(store.messages(c.id, q(Some(21), None, 5)).await.unwrap()),
        [16, 17, 18, 19, 20]
    );
    assert_eq!(
        seqs(store.messages(c.id, q(Some(3), None, 5)).await.unwrap()),
        [1, 2]
    );
    assert_eq!(
        seqs(store.messages(c.id, q(None, Some(0), 3)).await.unwrap()),
        [1, 2, 3]
    );
    assert_eq!(
        seqs(store.messages(c.id, q(None, Some(23), 5)).await.unwrap()),
        [24, 25]
    );
    assert_eq!(
        seqs(store.messages(c.id, q(Some(8), Some(4), 10)).await.unwrap()),
        [5, 6, 7]
    );
    assert!(
        store
            .messages(c.id, q(None, Some(25), 5))
            .await
            .unwrap()
            .is_empty()
    );
    let page = store.messages(c.id, q(None, Some(9), 1)).await.unwrap();
    assert_eq!(page[0].body.as_deref(), Some("n10"));
    assert!(
        store
            .messages(ConversationId::new(), q(None, None, 5))
            .await
            .unwrap()
            .is_empty()
    );
}

pub async fn edit_and_delete(store: Arc<dyn Store>) {
    let store = &*store;
    let alice = user(store, "alice").await;
    let bob = user(store, "bob").await;
    let (c, _) = store
        .direct_conversation(alice.id, bob.id, now())
        .await
        .unwrap();
    let m = store
        .append_message(new_message(c.id, alice.id, "e1", "tpyo"))
        .await
        .unwrap()
        .message;

    let edited = store
        .edit_message(c.id, 1, body("typo"), now())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(edited.body.as_deref(), Some("typo"));
    assert!(edited.edited_at.is_some());
    assert_eq!(
        (edited.id, edited.seq, edited.sent_at),
        (m.id, m.seq, m.sent_at)
    );
    assert!(
        store
            .edit_message(c.id, 2, body("nope"), now())
            .await
            .unwrap()
            .is_none()
    );

    let deleted = store.delete_message(c.id, 1, now()).await.unwrap().unwrap();
    assert_eq!(deleted.body, None);
    assert!(deleted.deleted_at.is_some());
    assert_eq!(deleted.id, m.id);
    assert!(
        store
            .delete_message(c.id, 1, now())
            .await
            .unwrap()
            .is_none(),
        "already deleted"
    );
    assert!(
        store
            .edit_message(c.id, 1, body("revive"), now())
            .await
            .unwrap()
            .is_none()
    );
    // the tombstone keeps its place in history
    let page = store
        .messages(
            c.id,
            HistoryQuery {
                before: None,
                after: None,
                limit: 10,
            },
        )
        .await
        .unwrap();
    assert_eq!(page, [deleted]);
    // and a retry of the deleted message does not bring it back
    let retry = store
        .append_message(new_message(c.id, alice.id, "e1", "tpyo"))
        .await
        .unwrap();
    assert!(!retry.created);
    assert_eq!(retry.message.body, None);
}

pub async fn read_markers(store: Arc<dyn Store>) {
    let store = &*store;
    let alice = user(store, "alice").await;
    let bob = user(store, "bob").await;
    let (c, _) = store
        .direct_conversation(alice.id, bob.id, now())
        .await
        .unwrap();
    for i in 0..5 {
        store
            .append_message(new_message(c.id, alice.id, &format!("r{i}"), "x"))
            .await
            .unwrap();
    }
    assert_eq!(store.mark_read(c.id, bob.id, 3).await.unwrap(), 3);
    assert_eq!(
        store.mark_read(c.id, bob.id, 2).await.unwrap(),
        3,
        "never backwards"
    );
    assert_eq!(
        store.mark_read(c.id, bob.id, 99).await.unwrap(),
        5,
        "clamped to the last message"
    );
    let carol = user(store, "carol").await;
    assert!(matches!(
        store.mark_read(c.id, carol.id, 1).await,
        Err(StoreError::NotMember)
    ));
}

pub async fn conversation_list(store: Arc<dyn Store>) {
    let store = &*store;
    let alice = user(store, "alice").await;
    let bob = user(store, "bob").await;
    let carol = user(store, "carol").await;
    let (d1, _) = store
        .direct_conversation(alice.id, bob.id, now())
        .await
        .unwrap();
    let (d2, _) = store
        .direct_conversation(alice.id, carol.id, now())
        .await
        .unwrap();
    let g = group(store, &alice, &[&bob, &carol]).await;
    let (_not_alice, _) = store
        .direct_conversation(bob.id, carol.id, now())
        .await
        .unwrap();

    store
        .append_message(new_message(d1.id, bob.id, "a", "one"))
        .await
        .unwrap();
    store
        .append_message(new_message(d1.id, bob.id, "b", "two"))
        .await
        .unwrap();
    store
        .append_message(new_message(g.id, carol.id, "c", "group hello"))
        .await
        .unwrap();
    store
        .append_message(new_message(d1.id, bob.id, "d", "three"))
        .await
        .unwrap();

    let list = store.list_conversations(alice.id, None, 10).await.unwrap();
    let ids: Vec<_> = list.iter().map(|s| s.conversation.id).collect();
    assert_eq!(ids, [d1.id, g.id, d2.id], "most recent activity first");
    let s = &list[0];
    assert_eq!(s.unread, 3);
    assert_eq!(s.read_seq, 0);
    assert_eq!(s.role, Role::Member);
    assert_eq!(s.member_count, 2);
    assert_eq!(s.peer.as_ref().unwrap().username.as_str(), "bob");
    assert_eq!(
        s.last_message.as_ref().unwrap().body.as_deref(),
        Some("three")
    );
    assert_eq!(list[1].role, Role::Owner);
    assert_eq!(list[1].member_count, 3);
    assert!(list[1].peer.is_none());
    assert_eq!(list[1].unread, 1);
    assert!(list[2].last_message.is_none());
    assert_eq!(list[2].unread, 0);

    store.mark_read(d1.id, alice.id, 2).await.unwrap();
    let list = store.list_conversations(alice.id, None, 10).await.unwrap();
    assert_eq!(list[0].unread, 1);

    // pages follow on from a cursor without overlap
    let first = store.list_conversations(alice.id, None, 2).await.unwrap();
    assert_eq!(first.len(), 2);
    let last = &first[1].conversation;
    let cursor = ConversationCursor {
        last_activity_at: last.last_activity_at,
        id: last.id,
    };
    let rest = store
        .list_conversations(alice.id, Some(cursor), 2)
        .await
        .unwrap();
    assert_eq!(
        rest.iter().map(|s| s.conversation.id).collect::<Vec<_>>(),
        [d2.id]
    );
}

/// What was committed is there after the store is opened again.
pub async fn survives_reopen<H: Harness>(harness: H) {
    let store = harness.open().await;
    let alice = user(&*store, "alice").await;
    let bob = user(&*store, "bob").await;
    let (c, _) = store
        .direct_conversation(alice.id, bob.id, now())
        .await
        .unwrap();
    let mut sent = Vec::new();
    for i in 0..50 {
        sent.push(
            store
                .append_message(new_message(c.id, alice.id, &format!("p{i}"), "durable"))
                .await
                .unwrap()
                .message,
        );
    }
    drop(store);
    let store = harness.open().await;
    let page = store
        .messages(
            c.id,
            HistoryQuery {
                before: None,
                after: Some(0),
                limit: 100,
            },
        )
        .await
        .unwrap();
    assert_eq!(page, sent);
    // and sequence numbers carry on without a gap
    let next = store
        .append_message(new_message(c.id, bob.id, "after", "restart"))
        .await
        .unwrap();
    assert_eq!(next.message.seq, 51);
    let again = store
        .append_message(new_message(c.id, alice.id, "p0", "durable"))
        .await
        .unwrap();
    assert!(!again.created, "deduplication survives a restart");
}

/// Runs the whole suite, one `#[tokio::test]` per check, against a backend.
///
/// ```ignore
/// natter_store::conformance_tests!(MyHarness);
/// ```
#[macro_export]
macro_rules! conformance_tests {
    ($harness:ty) => {
        $crate::conformance_tests!(@each $harness;
            users sessions contacts direct_conversations groups append_and_dedupe
            concurrent_appends history edit_and_delete read_markers conversation_list
            event_log user_events tailing_under_concurrent_writes delivered_markers
            delivered_markers_in_bulk
            presence_relations disabled_accounts rejoined_member_events blocking
            blocked_messages blocked_presence);

        #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
        async fn survives_reopen() {
            use $crate::conformance::Harness as _;
            let Some(h) = <$harness>::fresh().await else { return };
            $crate::conformance::survives_reopen(h).await;
        }
    };
    (@each $harness:ty; $($check:ident)*) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $check() {
                use $crate::conformance::Harness as _;
                let Some(h) = <$harness>::fresh().await else { return };
                $crate::conformance::$check(h.open().await).await;
            }
        )*
    };
}

// --- events and presence ------------------------------------------------

fn names(events: &[Event]) -> Vec<&'static str> {
    events.iter().map(|e| e.kind.name()).collect()
}

async fn all_events(store: &dyn Store, after: EventPos) -> Vec<Event> {
    store.events_after(after, 1000).await.unwrap()
}

/// Every change that clients follow is in the log, in order, once.
pub async fn event_log(store: Arc<dyn Store>) {
    let store = &*store;
    let start = store.event_head().await.unwrap();
    assert!(all_events(store, start).await.is_empty());
    let alice = user(store, "alice").await;
    let bob = user(store, "bob").await;
    let carol = user(store, "carol").await;

    let (d, _) = store
        .direct_conversation(alice.id, bob.id, now())
        .await
        .unwrap();
    store
        .direct_conversation(bob.id, alice.id, now())
        .await
        .unwrap();
    let m1 = store
        .append_message(new_message(d.id, alice.id, "e1", "one"))
        .await
        .unwrap();
    store
        .append_message(new_message(d.id, alice.id, "e1", "one"))
        .await
        .unwrap();
    store
        .append_message(new_message(d.id, alice.id, "e2", "two"))
        .await
        .unwrap();
    store
        .edit_message(d.id, 1, body("one!"), now())
        .await
        .unwrap();
    store.delete_message(d.id, 2, now()).await.unwrap();
    store.mark_delivered(d.id, bob.id, 1).await.unwrap();
    store.mark_delivered(d.id, bob.id, 1).await.unwrap();
    store.mark_read(d.id, bob.id, 2).await.unwrap();
    store.mark_read(d.id, bob.id, 1).await.unwrap();

    let events = all_events(store, start).await;
    assert_eq!(
        names(&events),
        [
            "conversation.created",
            "message.created",
            "message.created",
            "message.edited",
            "message.deleted",
            "receipt.delivered",
            "receipt.read",
        ],
        "repeated or no-op calls append nothing"
    );
    assert!(
        events.windows(2).all(|w| w[0].pos < w[1].pos),
        "positions increase"
    );
    assert!(
        events
            .iter()
            .all(|e| e.conversation_id == d.id && e.pos > start)
    );
    match &events[0].kind {
        EventKind::ConversationCreated(c) => assert_eq!(c.id, d.id),
        other => panic!("{other:?}"),
    }
    match &events[1].kind {
        // message events show the message as it is now
        EventKind::MessageCreated(m) => {
            assert_eq!(m.id, m1.message.id);
            assert_eq!(m.body.as_deref(), Some("one!"));
        }
        other => panic!("{other:?}"),
    }
    match &events[4].kind {
        EventKind::MessageDeleted(m) => assert_eq!((m.seq, m.body.as_ref()), (2, None)),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        events[5].kind,
        EventKind::Delivered {
            user: bob.username.clone(),
            seq: 1
        }
    );
    assert_eq!(
        events[6].kind,
        EventKind::Read {
            user: bob.username.clone(),
            seq: 2
        }
    );
    // reading implies delivery
    let members = store.members(d.id).await.unwrap();
    let bob_m = members
        .iter()
        .find(|m| m.user.username == bob.username)
        .unwrap();
    assert_eq!((bob_m.read_seq, bob_m.delivered_seq), (2, 2));
    let alice_m = members
        .iter()
        .find(|m| m.user.username == alice.username)
        .unwrap();
    assert_eq!(
        (alice_m.read_seq, alice_m.delivered_seq),
        (2, 2),
        "sending reads and delivers"
    );

    // group life cycle
    let mark = store.event_head().await.unwrap();
    assert_eq!(mark, events.last().unwrap().pos);
    let g = group(store, &alice, &[&bob]).await;
    store
        .rename_group(g.id, GroupTitle::parse("New").unwrap())
        .await
        .unwrap();
    store
        .set_member(g.id, carol.id, Role::Member, now())
        .await
        .unwrap();
    store
        .set_member(g.id, carol.id, Role::Member, now())
        .await
        .unwrap();
    store
        .set_member(g.id, bob.id, Role::Admin, now())
        .await
        .unwrap();
    store.remove_member(g.id, alice.id).await.unwrap();
    let events = all_events(store, mark).await;
    assert_eq!(
        names(&events),
        [
            "conversation.created",
            "conversation.renamed",
            "member.added",
            "member.role_changed",
            "member.removed",
            "member.role_changed",
        ]
    );
    assert_eq!(
        events[1].kind,
        EventKind::ConversationRenamed {
            title: "New".into()
        }
    );
    match &events[2].kind {
        EventKind::MemberAdded { user, role } => {
            assert_eq!((user.username.as_str(), *role), ("carol", Role::Member))
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        events[3].kind,
        EventKind::MemberRoleChanged {
            user: bob.username.clone(),
            role: Role::Admin
        }
    );
    assert_eq!(
        events[4].kind,
        EventKind::MemberRemoved {
            user: alice.username.clone()
        }
    );
    assert_eq!(
        events[5].kind,
        EventKind::MemberRoleChanged {
            user: bob.username.clone(),
            role: Role::Owner
        }
    );

    // paging from any position gives the rest, without overlap
    let everything = all_events(store, start).await;
    let mut paged = Vec::new();
    let mut at = start;
    loop {
        let page = store.events_after(at, 3).await.unwrap();
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 3);
        at = page.last().unwrap().pos;
        paged.extend(page);
    }
    assert_eq!(paged, everything);
}

/// Each user sees the events of their conversations, and their own
/// removal, and nothing else.
pub async fn user_events(store: Arc<dyn Store>) {
    let store = &*store;
    let start = store.event_head().await.unwrap();
    let alice = user(store, "alice").await;
    let bob = user(store, "bob").await;
    let carol = user(store, "carol").await;
    let (d, _) = store
        .direct_conversation(alice.id, bob.id, now())
        .await
        .unwrap();
    store
        .append_message(new_message(d.id, alice.id, "u1", "private"))
        .await
        .unwrap();
    let g = group(store, &alice, &[&carol]).await;
    store
        .append_message(new_message(g.id, carol.id, "u2", "group"))
        .await
        .unwrap();
    store.remove_member(g.id, carol.id).await.unwrap();
    store
        .append_message(new_message(g.id, alice.id, "u3", "after carol left"))
        .await
        .unwrap();

    let of = |events: Vec<Event>| names(&events);
    let bobs = store.user_events_after(bob.id, start, 100).await.unwrap();
    assert_eq!(
        of(bobs.clone()),
        ["conversation.created", "message.created"]
    );
    assert!(bobs.iter().all(|e| e.conversation_id == d.id));
    let carols = store.user_events_after(carol.id, start, 100).await.unwrap();
    assert_eq!(carols.len(), 1, "{carols:?}");
    assert_eq!(
        carols[0].kind,
        EventKind::MemberRemoved {
            user: carol.username.clone()
        }
    );
    let alices = store.user_events_after(alice.id, start, 100).await.unwrap();
    assert_eq!(alices.len(), 6);
    let tail = store
        .user_events_after(alice.id, alices[3].pos, 100)
        .await
        .unwrap();
    assert_eq!(tail, alices[4..].to_vec());
    let limited = store.user_events_after(alice.id, start, 2).await.unwrap();
    assert_eq!(limited, alices[..2].to_vec());
}

/// Readers tailing the log while many writers commit in parallel see every
/// event exactly once: a later commit never lands behind a reader.
pub async fn tailing_under_concurrent_writes(store: Arc<dyn Store>) {
    const WRITERS: usize = 16;
    const EACH: usize = 25;
    let start = store.event_head().await.unwrap();
    let hub = user(&*store, "hub").await;
    let mut pairs = Vec::new();
    for i in 0..WRITERS {
        let u = user(&*store, &format!("w{i}")).await;
        let (c, _) = store
            .direct_conversation(u.id, hub.id, now())
            .await
            .unwrap();
        pairs.push((u.id, c.id));
    }
    let from = store.event_head().await.unwrap();
    assert!(from > start);
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let store = store.clone();
        let done = done.clone();
        tokio::spawn(async move {
            let mut at = from;
            let mut seen = Vec::new();
            loop {
                let finished = done.load(std::sync::atomic::Ordering::SeqCst);
                let page = store.events_after(at, 50).await.unwrap();
                if let Some(last) = page.last() {
                    at = last.pos;
                }
                let empty = page.is_empty();
                seen.extend(page);
                if finished && empty {
                    return seen;
                }
            }
        })
    };
    let writers: Vec<_> = pairs
        .into_iter()
        .map(|(u, c)| {
            let store = store.clone();
            tokio::spawn(async move {
                for j in 0..EACH {
                    store
                        .append_message(new_message(c, u, &format!("t{j}"), "tail"))
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for w in writers {
        w.await.unwrap();
    }
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    let seen = reader.await.unwrap();
    assert!(seen.windows(2).all(|w| w[0].pos < w[1].pos));
    let mut ids: Vec<_> = seen
        .iter()
        .map(|e| match &e.kind {
            EventKind::MessageCreated(m) => m.id,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(ids.len(), WRITERS * EACH, "every event once");
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), WRITERS * EACH);
    assert_eq!(store.events_after(from, 10_000).await.unwrap(), seen);
}

pub async fn delivered_markers(store: Arc<dyn Store>) {
    let store = &*store;
    let alice = user(store, "alice").await;
    let bob = user(store, "bob").await;
    let (c, _) = store
        .direct_conversation(alice.id, bob.id, now())
        .await
        .unwrap();
    for i in 0..4 {
        store
            .append_message(new_message(c.id, alice.id, &format!("d{i}"), "x"))
            .await
            .unwrap();
    }
    assert_eq!(store.mark_delivered(c.id, bob.id, 2).await.unwrap(), 2);
    assert_eq!(store.mark_delivered(c.id, bob.id, 1).await.unwrap(), 2);
    assert_eq!(store.mark_delivered(c.id, bob.id, 9).await.unwrap(), 4);
    let carol = user(store, "carol").await;
    assert!(matches!(
        store.mark_delivered(c.id, carol.id, 1).await,
        Err(StoreError::NotMember)
    ));
    assert!(matches!(
        store.mark_delivered(ConversationId::new(), bob.id, 1).await,
        Err(StoreError::NotFound(_) | StoreError::NotMember)
    ));
}

pub async fn delivered_markers_in_bulk(store: Arc<dyn Store>) {
    let store = &*store;
    let alice = user(store, "alice").await;
    let bob = user(store, "bob").await;
    let carol = user(store, "carol").await;
    let (ab, _) = store
        .direct_conversation(alice.id, bob.id, now())
        .await
        .unwrap();
    let (ac, _) = store
        .direct_conversation(alice.id, carol.id, now())
        .await
        .unwrap();
    for i in 0..3 {
        for c in [ab.id, ac.id] {
            store
                .append_message(new_message(c, alice.id, &format!("b{i}-{c}"), "x"))
                .await
                .unwrap();
        }
    }
    let from = store.event_head().await.unwrap();
    store
        .mark_delivered_many(&[
            (ab.id, bob.id, 2),
            // clamped to the last message
            (ac.id, carol.id, 9),
            // not a member, and no such conversation: skipped
            (ab.id, carol.id, 1),
            (ConversationId::new(), bob.id, 1),
            // backwards: no move, no event
            (ab.id, bob.id, 1),
        ])
        .await
        .unwrap();
    let events = all_events(store, from).await;
    let moves: Vec<_> = events
        .iter()
        .map(|e| match &e.kind {
            EventKind::Delivered { user, seq } => (e.conversation_id, user.clone(), *seq),
            other => panic!("unexpected event {other:?}"),
        })
        .collect();
    assert_eq!(
        moves,
        [
            (ab.id, bob.username.clone(), 2),
            (ac.id, carol.username.clone(), 3)
        ]
    );
    // and the markers are where the events say, for the next single move
    assert_eq!(store.mark_delivered(ab.id, bob.id, 1).await.unwrap(), 2);
    assert_eq!(store.mark_delivered(ac.id, carol.id, 1).await.unwrap(), 3);
    store.mark_delivered_many(&[]).await.unwrap();

    // a burst is applied whole, however a backend splits it: its last
    // mark, after hundreds that move nothing, moves bob to the end
    let from = store.event_head().await.unwrap();
    let mut burst = vec![(ab.id, bob.id, 1); 500];
    burst.push((ab.id, bob.id, 3));
    store.mark_delivered_many(&burst).await.unwrap();
    let events = all_events(store, from).await;
    assert_eq!(events.len(), 1, "{events:?}");
    assert!(matches!(
        &events[0].kind,
        EventKind::Delivered { user, seq: 3 } if *user == bob.username
    ));
}

pub async fn presence_relations(store: Arc<dyn Store>) {
    let store = &*store;
    let alice = user(store, "alice").await;
    let bob = user(store, "bob").await;
    let carol = user(store, "carol").await;
    let dave = user(store, "dave").await;
    // alice lists bob: bob sees alice; alice and carol talk directly
    store
        .put_contact(alice.id, bob.id, None, ContactGroups::default(), now())
        .await
        .unwrap();
    store
        .direct_conversation(alice.id, carol.id, now())
        .await
        .unwrap();
    // a contact who is also a direct peer counts once
    store
        .put_contact(alice.id, carol.id, None, ContactGroups::default(), now())
        .await
        .unwrap();
    // groups alone share no presence
    group(store, &alice, &[&dave]).await;

    let mut audience = store.presence_audience(alice.id).await.unwrap();
    audience.sort();
    let mut want = vec![bob.id, carol.id];
    want.sort();
    assert_eq!(audience, want);

    let seen_by = |peers: Vec<PresencePeer>| {
        peers
            .into_iter()
            .map(|p| p.username.into_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        seen_by(store.presence_subjects(bob.id).await.unwrap()),
        ["alice"]
    );
    assert_eq!(
        seen_by(store.presence_subjects(carol.id).await.unwrap()),
        ["alice"]
    );
    assert!(store.presence_subjects(dave.id).await.unwrap().is_empty());
    assert_eq!(
        seen_by(store.presence_subjects(alice.id).await.unwrap()),
        ["carol"]
    );

    let at = now();
    let subjects = store.presence_subjects(bob.id).await.unwrap();
    assert_eq!(subjects[0].last_seen_at, None);
    store.set_last_seen(alice.id, at).await.unwrap();
    let subjects = store.presence_subjects(bob.id).await.unwrap();
    assert_eq!(subjects[0].last_seen_at, Some(at));
    assert_eq!(subjects[0].id, alice.id);
}

/// Disabling an account ends its sessions at once; enabling it again
/// lets it log in anew.
pub async fn disabled_accounts(store: Arc<dyn Store>) {
    let store = &*store;
    let alice = user(store, "alice").await;
    let bob = user(store, "bob").await;
    store
        .create_session(session(alice.id, 1, TimeDelta::hours(1)))
        .await
        .unwrap();
    store
        .create_session(session(alice.id, 2, TimeDelta::hours(1)))
        .await
        .unwrap();
    store
        .create_session(session(bob.id, 3, TimeDelta::hours(1)))
        .await
        .unwrap();
    assert_eq!(store.user_disabled_at(alice.id).await.unwrap(), None);

    let at = now();
    store.set_user_disabled(alice.id, Some(at)).await.unwrap();
    assert_eq!(store.user_disabled_at(alice.id).await.unwrap(), Some(at));
    assert!(store.session_by_token(&[1; 32]).await.unwrap().is_none());
    assert!(store.session_by_token(&[2; 32]).await.unwrap().is_none());
    assert!(
        store.session_by_token(&[3; 32]).await.unwrap().is_some(),
        "bob untouched"
    );
    assert_eq!(store.user_disabled_at(bob.id).await.unwrap(), None);

    store.set_user_disabled(alice.id, None).await.unwrap();
    assert_eq!(store.user_disabled_at(alice.id).await.unwrap(), None);
    assert!(matches!(
        store.set_user_disabled(UserId(i64::MAX), Some(at)).await,
        Err(StoreError::NotFound("user"))
    ));
    assert!(matches!(
        store.user_disabled_at(UserId(i64::MAX)).await,
        Err(StoreError::NotFound("user"))
    ));
}

/// A member removed and added again matches their removal event twice
/// (by conversation and as its target): it must still come once, and a
/// page must still be full.
pub async fn rejoined_member_events(store: Arc<dyn Store>) {
    let store = &*store;
    let start = store.event_head().await.unwrap();
    let alice = user(store, "alice").await;
    let bob = user(store, "bob").await;
    let g = group(store, &alice, &[&bob]).await;
    store.remove_member(g.id, bob.id).await.unwrap();
    store
        .set_member(g.id, bob.id, Role::Member, now())
        .await
        .unwrap();
    for i in 0..5 {
        store
            .append_message(new_message(g.id, alice.id, &format!("j{i}"), "back"))
            .await
            .unwrap();
    }
    let all = store.user_events_after(bob.id, start, 100).await.unwrap();
    assert_eq!(
        names(&all),
        [
            "conversation.created",
            "member.removed",
            "member.added",
            "message.created",
            "message.created",
            "message.created",
            "message.created",
            "message.created",
        ]
    );
    assert!(
        all.windows(2).all(|w| w[0].pos < w[1].pos),
        "each event once"
    );
    let page = store.user_events_after(bob.id, start, 3).await.unwrap();
    assert_eq!(
        page,
        all[..3].to_vec(),
        "a page is full despite the double match"
    );
    let next = store
        .user_events_after(bob.id, page[2].pos, 3)
        .await
        .unwrap();
    assert_eq!(next, all[3..6].to_vec());
}

// --- blocking -----------------------------------------------------------

fn blocked_names(list: &[BlockedUser]) -> Vec<&str> {
    list.iter().map(|b| b.user.username.as_str()).collect()
}

/// Blocked lists: idempotent blocks, unblocking one or all, the order of
/// the list, lists of different users kept apart, and the pair check both
/// ways.
pub async fn blocking(store: Arc<dyn Store>) {
    let store = &*store;
    let alice = user(store, "alice").await;
    let bob = user(store, "bob").await;
    let carol = user(store, "carol").await;
    let dave = user(store, "dave").await;

    assert!(store.blocked_users(alice.id).await.unwrap().is_empty());
    assert_eq!(
        store.blocks_between(alice.id, bob.id).await.unwrap(),
        Blocks::default()
    );

    let first = now();
    assert!(store.block_user(alice.id, carol.id, first).await.unwrap());
    assert!(store.block_user(alice.id, bob.id, now()).await.unwrap());
    assert!(
        !store.block_user(alice.id, carol.id, now()).await.unwrap(),
        "blocking twice is not a second entry"
    );
    let list = store.blocked_users(alice.id).await.unwrap();
    assert_eq!(
        blocked_names(&list),
        ["bob", "carol"],
        "ordered by username"
    );
    assert_eq!(list[1].blocked_at, first, "a repeated block keeps the date");

    // The pair check, both ways and in either order of arguments.
    let ab = store.blocks_between(alice.id, bob.id).await.unwrap();
    assert!(ab.by_first && !ab.by_second && ab.any());
    let ba = store.blocks_between(bob.id, alice.id).await.unwrap();
    assert!(!ba.by_first && ba.by_second);
    assert!(!store.blocks_between(bob.id, carol.id).await.unwrap().any());
    store.block_user(bob.id, alice.id, now()).await.unwrap();
    let ab = store.blocks_between(alice.id, bob.id).await.unwrap();
    assert!(ab.by_first && ab.by_second, "a block each way");

    // Lists are per owner.
    assert_eq!(
        blocked_names(&store.blocked_users(bob.id).await.unwrap()),
        ["alice"]
    );
    assert!(store.blocked_users(carol.id).await.unwrap().is_empty());
    store.block_user(dave.id, carol.id, now()).await.unwrap();

    assert!(store.unblock_user(alice.id, bob.id).await.unwrap());
    assert!(!store.unblock_user(alice.id, bob.id).await.unwrap());
    assert_eq!(
        blocked_names(&store.blocked_users(alice.id).await.unwrap()),
        ["carol"]
    );
    let ab = store.blocks_between(alice.id, bob.id).await.unwrap();
    assert!(!ab.by_first && ab.by_second, "bob's block stands");

    store.block_user(alice.id, dave.id, now()).await.unwrap();
    assert_eq!(store.unblock_all(alice.id).await.unwrap(), 2);
    assert_eq!(store.unblock_all(alice.id).await.unwrap(), 0);
    assert!(store.blocked_users(alice.id).await.unwrap().is_empty());
    assert_eq!(
        blocked_names(&store.blocked_users(dave.id).await.unwrap()),
        ["carol"],
        "another owner's list is untouched"
    );
    assert_eq!(
        blocked_names(&store.blocked_users(bob.id).await.unwrap()),
        ["alice"]
    );

    assert!(matches!(
        store.block_user(alice.id, UserId(i64::MAX), now()).await,
        Err(StoreError::NotFound("user"))
    ));
}

/// No message is appended between a blocked pair, whoever blocked; the
/// sender's own block is named first; groups are not affected; history
/// stays readable; unblocking restores sending.
pub async fn blocked_messages(store: Arc<dyn Store>) {
    let store = &*store;
    let alice = user(store, "alice").await;
    let bob = user(store, "bob").await;
    let carol = user(store, "carol").await;
    let (direct, _) = store
        .direct_conversation(alice.id, bob.id, now())
        .await
        .unwrap();
    let shared = group(store, &alice, &[&bob]).await;
    store
        .append_message(new_message(direct.id, bob.id, "b1", "hi"))
        .await
        .unwrap();
    assert!(!store.direct_blocked(direct.id).await.unwrap());

    store.block_user(alice.id, bob.id, now()).await.unwrap();
    assert!(store.direct_blocked(direct.id).await.unwrap());
    assert!(!store.direct_blocked(shared.id).await.unwrap());
    let head = store.event_head().await.unwrap();
    assert!(matches!(
        store
            .append_message(new_message(direct.id, bob.id, "b2", "hello?"))
            .await,
        Err(StoreError::RecipientBlocked)
    ));
    assert!(matches!(
        store
            .append_message(new_message(direct.id, alice.id, "a1", "hm"))
            .await,
        Err(StoreError::SenderBlocked)
    ));
    // A non-member learns nothing about the block.
    assert!(matches!(
        store
            .append_message(new_message(direct.id, carol.id, "c1", "x"))
            .await,
        Err(StoreError::NotMember)
    ));
    // Nothing was stored, no number used, no event written.
    let conv = store.conversation(direct.id).await.unwrap().unwrap();
    assert_eq!(conv.last_seq, 1);
    assert!(store.events_after(head, 100).await.unwrap().is_empty());
    let history = store
        .messages(
            direct.id,
            HistoryQuery {
                before: None,
                after: None,
                limit: 10,
            },
        )
        .await
        .unwrap();
    assert_eq!(history.len(), 1, "history stays readable");
    // A group with both goes on.
    store
        .append_message(new_message(shared.id, bob.id, "b3", "in the group"))
        .await
        .unwrap();
    // Both blocked: the sender's own block is what the sender hears.
    store.block_user(bob.id, alice.id, now()).await.unwrap();
    assert!(matches!(
        store
            .append_message(new_message(direct.id, bob.id, "b4", "x"))
            .await,
        Err(StoreError::SenderBlocked)
    ));
    store.unblock_all(bob.id).await.unwrap();
    store.unblock_user(alice.id, bob.id).await.unwrap();
    let sent = store
        .append_message(new_message(direct.id, bob.id, "b5", "again"))
        .await
        .unwrap();
    assert_eq!(sent.message.seq, 2, "gap-free across refusals");
}

/// A blocked pair shares no presence, whoever blocked.
pub async fn blocked_presence(store: Arc<dyn Store>) {
    let store = &*store;
    let alice = user(store, "alice").await;
    let bob = user(store, "bob").await;
    let carol = user(store, "carol").await;
    for (a, b) in [(&alice, &bob), (&bob, &alice), (&alice, &carol)] {
        store
            .put_contact(a.id, b.id, None, ContactGroups::default(), now())
            .await
            .unwrap();
    }
    store
        .direct_conversation(alice.id, bob.id, now())
        .await
        .unwrap();
    let ids = |v: Vec<UserId>| {
        let mut v = v;
        v.sort();
        v
    };
    let names = |v: Vec<PresencePeer>| {
        v.into_iter()
            .map(|p| p.username.into_string())
            .collect::<Vec<_>>()
    };
    let mut both = vec![bob.id, carol.id];
    both.sort();
    assert_eq!(ids(store.presence_audience(alice.id).await.unwrap()), both);

    store.block_user(bob.id, alice.id, now()).await.unwrap();
    assert_eq!(
        store.presence_audience(alice.id).await.unwrap(),
        [carol.id],
        "bob blocked alice: he does not see her"
    );
    assert!(
        store.presence_audience(bob.id).await.unwrap().is_empty(),
        "nor does she see him"
    );
    assert!(store.presence_subjects(bob.id).await.unwrap().is_empty());
    assert!(store.presence_subjects(alice.id).await.unwrap().is_empty());
    assert_eq!(
        names(store.presence_subjects(carol.id).await.unwrap()),
        ["alice"]
    );
    // Contacts and conversations stay.
    assert_eq!(store.list_contacts(bob.id).await.unwrap().len(), 1);

    store.unblock_user(bob.id, alice.id).await.unwrap();
    assert_eq!(ids(store.presence_audience(alice.id).await.unwrap()), both);
    assert_eq!(
        names(store.presence_subjects(bob.id).await.unwrap()),
        ["alice"]
    );
}
