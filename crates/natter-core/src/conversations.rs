//! Direct and group conversations, their members and roles.
//!
//! Permission rules for groups (direct conversations have no roles to
//! change and no members to add or remove):
//!
//! | action                              | member | admin | owner |
//! |-------------------------------------|--------|-------|-------|
//! | read, send, leave                   | yes    | yes   | yes   |
//! | rename                              |        | yes   | yes   |
//! | add a member (role `member`)        |        | yes   | yes   |
//! | remove a plain member               |        | yes   | yes   |
//! | add with or change to any role      |        |       | yes   |
//! | remove an admin or an owner         |        |       | yes   |
//!
//! A group always has an owner while it has members: the last owner cannot
//! demote themselves, and when the last owner leaves the store hands the
//! group to the longest-standing admin, or else member.

use natter_store::{ConversationCursor, NewGroup};
use natter_types::{
    Conversation, ConversationId, ConversationKind, ConversationSummary, GroupTitle, Member, Role,
    Username, ValidationError,
};

use crate::{Caller, CoreError, CoreResult, Hub, now};

/// Most members that can be named when a group is created.
pub const MAX_INITIAL_MEMBERS: usize = 1000;
/// Largest page of the conversation list.
pub const MAX_LIST_PAGE: u32 = 100;

/// A conversation with its members, as its members see it.
#[derive(Debug, Clone)]
pub struct ConversationDetails {
    pub conversation: Conversation,
    pub members: Vec<Member>,
}

/// The result of creating a conversation: for a direct conversation that
/// existed already, `created` is false.
#[derive(Debug, Clone)]
pub struct CreatedConversation {
    pub details: ConversationDetails,
    pub created: bool,
}

impl Hub {
    /// The direct conversation of the caller and `with`, created on first
    /// use. Refused across a block (`Blocked` or `RecipientUnavailable`);
    /// an existing one stays readable through its id.
    pub async fn direct_conversation(
        &self,
        caller: &Caller,
        with: &Username,
    ) -> CoreResult<CreatedConversation> {
        let peer = self.user(with).await?;
        if peer.id == caller.user.id {
            return Err(
                ValidationError::new("with", "a direct conversation needs another user").into(),
            );
        }
        self.check_not_blocked(caller, &peer).await?;
        let (conversation, created) = self
            .store()
            .direct_conversation(caller.user.id, peer.id, now())
            .await?;
        if created {
            self.wake_tailer();
        }
        let members = self.store().members(conversation.id).await?;
        Ok(CreatedConversation {
            details: ConversationDetails {
                conversation,
                members,
            },
            created,
        })
    }

    /// Creates a group owned by the caller with the named members.
    pub async fn create_group(
        &self,
        caller: &Caller,
        title: GroupTitle,
        members: Vec<Username>,
    ) -> CoreResult<CreatedConversation> {
        if members.len() > MAX_INITIAL_MEMBERS.min(self.config().max_group_members) {
            return Err(ValidationError::new(
                "members",
                format!(
                    "at most {} members when creating a group",
                    MAX_INITIAL_MEMBERS.min(self.config().max_group_members)
                ),
            )
            .into());
        }
        let mut wanted = members;
        wanted.sort();
        wanted.dedup();
        let found = self.store().users_by_username(&wanted).await?;
        if found.len() != wanted.len() {
            let missing: Vec<&str> = wanted
                .iter()
                .filter(|w| !found.iter().any(|u| &u.username == *w))
                .map(|w| w.as_str())
                .collect();
            return Err(ValidationError::new(
                "members",
                format!("no such users: {}", missing.join(", ")),
            )
            .into());
        }
        let conversation = self
            .store()
            .create_group(NewGroup {
                id: ConversationId::new(),
                title,
                owner: caller.user.id,
                members: found.iter().map(|u| u.id).collect(),
                now: now(),
            })
            .await?;
        self.wake_tailer();
        let members = self.store().members(conversation.id).await?;
        Ok(CreatedConversation {
            details: ConversationDetails {
                conversation,
                members,
            },
            created: true,
        })
    }

    /// The caller's role in a conversation: `NotFound` if there is no such
    /// conversation, `not_member` if the caller is not in it.
    pub(crate) async fn role_in(
        &self,
        caller: &Caller,
        id: ConversationId,
    ) -> CoreResult<(Conversation, Role)> {
        let conversation = self
            .store()
            .conversation(id)
            .await?
            .ok_or(CoreError::not_found("conversation"))?;
        let role = self
            .store()
            .member_role(id, caller.user.id)
            .await?
            .ok_or_else(CoreError::not_member)?;
        Ok((conversation, role))
    }

    pub async fn conversation(
        &self,
        caller: &Caller,
        id: ConversationId,
    ) -> CoreResult<ConversationDetails> {
        let (conversation, _) = self.role_in(caller, id).await?;
        let members = self.store().members(id).await?;
        Ok(ConversationDetails {
            conversation,
            members,
        })
    }

    /// A page of the caller's conversations, most recent activity first.
    pub async fn conversations(
        &self,
        caller: &Caller,
        after: Option<ConversationCursor>,
        limit: u32,
    ) -> CoreResult<Vec<ConversationSummary>> {
        Ok(self
            .store()
            .list_conversations(caller.user.id, after, limit.clamp(1, MAX_LIST_PAGE))
            .await?)
    }

    /// Renames a group; admins and owners only.
    pub async fn rename_group(
        &self,
        caller: &Caller,
        id: ConversationId,
        title: GroupTitle,
    ) -> CoreResult<Conversation> {
        let (conversation, role) = self.role_in(caller, id).await?;
        require_group(&conversation)?;
        if role < Role::Admin {
            return Err(CoreError::forbidden(
                "insufficient_role",
                "only admins and owners can rename a group",
            ));
        }
        let renamed = self.store().rename_group(id, title).await?;
        self.wake_tailer();
        Ok(renamed)
    }

    /// Adds a member to a group or changes a member's role. Returns whether
    /// the user was added (rather than changed).
    pub async fn set_member(
        &self,
        caller: &Caller,
        id: ConversationId,
        username: &Username,
        role: Role,
    ) -> CoreResult<bool> {
        let (conversation, my_role) = self.role_in(caller, id).await?;
        require_group(&conversation)?;
        let target = self.user(username).await?;
        let current = self.store().member_role(id, target.id).await?;
        if current == Some(role) {
            return Ok(false);
        }
        match (my_role, current) {
            (Role::Owner, _) => {}
            (Role::Admin, None) if role == Role::Member => {}
            (Role::Admin, _) => {
                return Err(CoreError::forbidden(
                    "insufficient_role",
                    "admins can only add plain members; roles are changed by owners",
                ));
            }
            (Role::Member, _) => {
                return Err(CoreError::forbidden(
                    "insufficient_role",
                    "only admins and owners can add members",
                ));
            }
        }
        if current == Some(Role::Owner) && role < Role::Owner {
            self.ensure_other_owner(id, target.id).await?;
        }
        if current.is_none() {
            let count = self.store().members(id).await?.len();
            if count >= self.config().max_group_members {
                return Err(CoreError::conflict(
                    "group_full",
                    format!(
                        "a group has at most {} members",
                        self.config().max_group_members
                    ),
                ));
            }
        }
        let added = self.store().set_member(id, target.id, role, now()).await?;
        self.wake_tailer();
        Ok(added)
    }

    async fn ensure_other_owner(
        &self,
        id: ConversationId,
        leaving: natter_types::UserId,
    ) -> CoreResult<()> {
        let leaving = self
            .store()
            .user_by_id(leaving)
            .await?
            .ok_or(CoreError::not_found("user"))?;
        let others = self
            .store()
            .members(id)
            .await?
            .into_iter()
            .filter(|m| m.role == Role::Owner && m.user.username != leaving.username)
            .count();
        if others == 0 {
            return Err(CoreError::conflict(
                "last_owner",
                "a group needs an owner: make someone else owner first",
            ));
        }
        Ok(())
    }

    /// Removes a member from a group, or leaves it when the caller names
    /// themselves.
    pub async fn remove_member(
        &self,
        caller: &Caller,
        id: ConversationId,
        username: &Username,
    ) -> CoreResult<()> {
        let (conversation, my_role) = self.role_in(caller, id).await?;
        require_group(&conversation)?;
        let target = self.user(username).await?;
        if target.id != caller.user.id {
            let their_role = self
                .store()
                .member_role(id, target.id)
                .await?
                .ok_or(CoreError::not_found("member"))?;
            let allowed = match my_role {
                Role::Owner => true,
                Role::Admin => their_role == Role::Member,
                Role::Member => false,
            };
            if !allowed {
                return Err(CoreError::forbidden(
                    "insufficient_role",
                    "you cannot remove this member",
                ));
            }
        }
        if !self.store().remove_member(id, target.id).await? {
            return Err(CoreError::not_found("member"));
        }
        self.wake_tailer();
        Ok(())
    }
}

fn require_group(conversation: &Conversation) -> CoreResult<()> {
    if conversation.kind == ConversationKind::Group {
        Ok(())
    } else {
        Err(CoreError::conflict(
            "not_a_group",
            "direct conversations have fixed members and no roles",
        ))
    }
}
