//! The REST half of the SDK: every error the API can give arrives as the
//! right typed variant with its code and field, and the typed calls cover
//! a whole session of use (contacts, conversations, history, read
//! markers, edits).

use futures::TryStreamExt;
use natter_client::proto::PutContactRequest;
use natter_client::{Client, ConversationKind, Error, HistoryQuery, Role, Transport};
use natter_testkit::{PASSWORD, TestServer};
use uuid::Uuid;

use crate::sdk_user;

#[tokio::test]
async fn errors_say_what_went_wrong() {
    let server = TestServer::start_with(|c| c.limits.login_failures_per_minute = 2).await;
    let c = Client::new(&server.url("")).unwrap();

    let e = c.signup("Not Valid!", PASSWORD, None).await.unwrap_err();
    assert!(
        matches!(&e, Error::Invalid { field: Some(f), code, .. } if f == "username" && code == "invalid_field"),
        "{e:?}"
    );
    let e = c.signup("alice", "short", None).await.unwrap_err();
    assert_eq!(e.field(), Some("password"), "{e:?}");
    assert!(!e.is_retryable());

    let alice = c.signup("alice", PASSWORD, Some("Alice")).await.unwrap();
    assert_eq!(alice.display_name.as_deref(), Some("Alice"));
    let e = c.signup("alice", PASSWORD, None).await.unwrap_err();
    assert!(
        matches!(&e, Error::Conflict { code, .. } if code == "username_taken"),
        "{e:?}"
    );

    let e = c.me().await.unwrap_err();
    assert!(
        matches!(&e, Error::Unauthenticated { code, .. } if code == "unauthenticated"),
        "{e:?}"
    );
    let e = c.login("alice", "wrong password").await.unwrap_err();
    assert!(
        matches!(&e, Error::Unauthenticated { code, .. } if code == "invalid_credentials"),
        "{e:?}"
    );
    // past two failures a minute from this IP, log-ins are throttled
    let mut e = c.login("alice", "wrong password").await.unwrap_err();
    for _ in 0..3 {
        if matches!(e, Error::RateLimited { .. }) {
            break;
        }
        e = c.login("alice", "wrong password").await.unwrap_err();
    }
    assert!(
        matches!(&e, Error::RateLimited { retry_after: Some(d), .. } if d.as_secs() >= 1),
        "{e:?}"
    );
    assert!(e.is_retryable());

    let server = TestServer::start().await;
    let alice = sdk_user(&server, "alice", Transport::Auto).await;
    let e = alice.user("nobody").await.unwrap_err();
    assert!(
        matches!(&e, Error::NotFound { code, .. } if code == "user_not_found"),
        "{e:?}"
    );
    let e = alice.conversation(Uuid::now_v7()).await.unwrap_err();
    assert_eq!(e.code(), Some("conversation_not_found"));

    let bob = server.user("bob").await;
    server.user("carol").await;
    let theirs: Uuid = bob.direct("carol").await.parse().unwrap();
    let e = alice
        .history(theirs, HistoryQuery::default())
        .await
        .unwrap_err();
    assert!(
        matches!(&e, Error::Forbidden { code, .. } if code == "not_member"),
        "{e:?}"
    );
    let e = alice.send(theirs, "hi").await.unwrap_err();
    assert!(matches!(e, Error::Forbidden { .. }), "{e:?}");

    let unreachable = Client::new("http://127.0.0.1:1").unwrap();
    let e = unreachable.me().await.unwrap_err();
    assert!(matches!(e, Error::Network { .. }), "{e:?}");
    assert!(e.to_string().contains("refused"), "{e}");

    let e = Client::new("ftp://127.0.0.1").unwrap_err();
    assert!(matches!(e, Error::Config { .. }), "{e:?}");
}

#[tokio::test]
async fn a_session_of_use() {
    let server = TestServer::start().await;
    let alice = sdk_user(&server, "alice", Transport::Auto).await;
    let bob = sdk_user(&server, "bob", Transport::Auto).await;
    sdk_user(&server, "carol", Transport::Auto).await;

    assert_eq!(alice.me().await.unwrap().username, "alice");
    let found = alice.search_users("bo", None).await.unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].username, "bob");

    let (contact, created) = alice
        .put_contact(
            "bob",
            &PutContactRequest {
                name: Some("Bobby".into()),
                groups: vec!["friends".into()],
            },
        )
        .await
        .unwrap();
    assert!(created);
    assert_eq!(contact.name.as_deref(), Some("Bobby"));
    assert_eq!(alice.contacts().await.unwrap().len(), 1);
    alice.remove_contact("bob").await.unwrap();
    assert!(alice.contacts().await.unwrap().is_empty());
    let e = alice.remove_contact("bob").await.unwrap_err();
    assert!(matches!(e, Error::NotFound { .. }), "{e:?}");

    let direct = alice.direct("bob").await.unwrap();
    assert_eq!(direct.kind, ConversationKind::Direct);
    assert_eq!(alice.direct("bob").await.unwrap().id, direct.id);
    let group = alice
        .create_group("Team", &["bob".into(), "carol".into()])
        .await
        .unwrap();
    assert_eq!(group.members.len(), 3);
    let group = alice
        .set_member(group.id, "carol", Some(Role::Admin))
        .await
        .unwrap();
    assert!(
        group
            .members
            .iter()
            .any(|m| m.username == "carol" && m.role == Role::Admin)
    );
    alice.rename_group(group.id, "Crew").await.unwrap();
    alice.remove_member(group.id, "carol").await.unwrap();
    assert_eq!(alice.conversation(group.id).await.unwrap().members.len(), 2);

    for i in 1..=250 {
        bob.send(direct.id, format!("m{i}")).await.unwrap();
    }
    let list = alice.conversations().await.unwrap();
    assert_eq!(list.len(), 2);
    let d = list.iter().find(|c| c.id == direct.id).unwrap();
    assert_eq!(d.unread, 250);
    assert_eq!(d.peer.as_ref().unwrap().username, "bob");

    // a long history streams out whole and in order, page by page
    let all: Vec<_> = alice
        .messages_after(direct.id, 0)
        .try_collect()
        .await
        .unwrap();
    assert_eq!(all.len(), 250);
    assert!(all.iter().enumerate().all(|(i, m)| m.seq == i as i64 + 1));
    let tail: Vec<_> = alice
        .messages_after(direct.id, 240)
        .try_collect()
        .await
        .unwrap();
    assert_eq!(tail.len(), 10);

    let page = alice
        .history(
            direct.id,
            HistoryQuery {
                before: Some(11),
                limit: Some(5),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        page.messages.iter().map(|m| m.seq).collect::<Vec<_>>(),
        [6, 7, 8, 9, 10]
    );
    assert!(page.has_more);

    assert_eq!(alice.mark_read(direct.id, 200).await.unwrap(), 200);
    let list = alice.conversations().await.unwrap();
    assert_eq!(list.iter().find(|c| c.id == direct.id).unwrap().unread, 50);

    let edited = bob.edit(direct.id, 1, "first!").await.unwrap();
    assert!(edited.edited_at.is_some());
    let e = alice.edit(direct.id, 1, "mine now").await.unwrap_err();
    assert!(matches!(e, Error::Forbidden { .. }), "{e:?}");
    let gone = bob.delete_message(direct.id, 2).await.unwrap();
    assert!(gone.body.is_none());
    alice.typing(direct.id, true).await.unwrap();

    assert!(!alice.sessions().await.unwrap().is_empty());
    alice.logout().await.unwrap();
    assert!(alice.token().is_none());
    let e = alice.me().await.unwrap_err();
    assert!(matches!(e, Error::Unauthenticated { .. }), "{e:?}");
}
