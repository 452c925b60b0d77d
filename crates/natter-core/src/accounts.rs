//! Accounts, log-in sessions, profiles, the user directory and contacts.

use std::net::IpAddr;

use base64::Engine;
use chrono::TimeDelta;
use natter_store::NewSession;
use natter_store::NewUser;
use natter_types::{
    Contact, ContactGroups, ContactName, DisplayName, Password, Session, SessionId, User, Username,
};
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::realtime::Revoked;
use crate::{Caller, CoreError, CoreResult, Hub, RegistrationMode, now, scram};

/// Where a log-in comes from; used for throttling and shown in the
/// session list.
#[derive(Debug, Clone, Default)]
pub struct LoginContext {
    pub ip: Option<IpAddr>,
    pub user_agent: Option<String>,
}

/// A successful log-in. The token is shown here once and never stored.
#[derive(Debug, Clone)]
pub struct LoginOutcome {
    pub token: String,
    pub session: Session,
    pub user: User,
}

/// Bytes of randomness in a bearer token (256 bits).
const TOKEN_BYTES: usize = 32;
/// Longest user agent kept with a session.
const MAX_USER_AGENT: usize = 256;
/// Largest page of directory search results.
pub const MAX_SEARCH_RESULTS: u32 = 50;

fn scram_invalid(e: scram::ScramError) -> CoreError {
    natter_types::ValidationError::new("sasl", e.to_string()).into()
}

fn token_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl Hub {
    /// Creates an account, if registration is open.
    pub async fn sign_up(
        &self,
        username: Username,
        password: Password,
        display_name: Option<DisplayName>,
    ) -> CoreResult<User> {
        if self.config().registration == RegistrationMode::Closed {
            return Err(CoreError::RegistrationClosed);
        }
        self.create_account(username, password, display_name).await
    }

    /// Creates an account whatever the registration mode; for
    /// administrators.
    pub async fn create_account(
        &self,
        username: Username,
        password: Password,
        display_name: Option<DisplayName>,
    ) -> CoreResult<User> {
        let credentials = self.derive_credentials(password).await?;
        let user = self
            .store()
            .create_user(NewUser {
                username,
                display_name,
                credentials,
                now: now(),
            })
            .await?;
        metrics::counter!("natter_accounts_created_total").increment(1);
        Ok(user)
    }

    /// PBKDF2 is deliberately slow, so it runs off the async workers.
    async fn derive_credentials(
        &self,
        password: Password,
    ) -> CoreResult<natter_types::Credentials> {
        let iterations = self.config().scram_iterations;
        tokio::task::spawn_blocking(move || scram::derive(&password, iterations))
            .await
            .map_err(|e| CoreError::Unavailable(e.to_string()))
    }

    /// Checks a password, throttling failures per client IP.
    async fn check_password(
        &self,
        username: &Username,
        password: Password,
        ip: Option<IpAddr>,
    ) -> CoreResult<User> {
        if let Some(ip) = ip {
            self.inner
                .throttle
                .check(ip)
                .map_err(|retry_after| CoreError::RateLimited { retry_after })?;
        }
        let user = self.store().user_by_username(username).await?;
        let credentials = match &user {
            Some(u) => self.store().credentials(u.id).await?,
            None => None,
        };
        let iterations = self.config().scram_iterations;
        let ok = tokio::task::spawn_blocking(move || match credentials {
            Some(c) => scram::verify(&password, &c),
            None => {
                scram::verify_dummy(&password, iterations);
                false
            }
        })
        .await
        .map_err(|e| CoreError::Unavailable(e.to_string()))?;
        match (ok, user) {
            (true, Some(user)) => {
                self.ensure_enabled(&user).await?;
                Ok(user)
            }
            _ => {
                if let Some(ip) = ip {
                    self.inner.throttle.failed(ip);
                }
                metrics::counter!("natter_login_failures_total").increment(1);
                Err(CoreError::BadCredentials)
            }
        }
    }

    /// Logs in with a password and opens a session.
    pub async fn log_in(
        &self,
        username: &Username,
        password: Password,
        context: LoginContext,
    ) -> CoreResult<LoginOutcome> {
        let user = self.check_password(username, password, context.ip).await?;
        self.open_session(user, context).await
    }

    /// Starts a SASL SCRAM exchange (XMPP log-in) from the client-first
    /// message; returns the server's state and its first message. Throttled
    /// per IP like password log-ins; an unknown user goes on to fail at the
    /// proof, exactly like a wrong password.
    pub async fn scram_start(
        &self,
        mechanism: scram::Mechanism,
        client_first: &[u8],
        bindings: &scram::ChannelBindings,
        ip: Option<IpAddr>,
    ) -> CoreResult<(scram::ScramServer, String)> {
        if let Some(ip) = ip {
            self.inner
                .throttle
                .check(ip)
                .map_err(|retry_after| CoreError::RateLimited { retry_after })?;
        }
        let first = scram::parse_client_first(client_first, mechanism.plus, bindings)
            .map_err(scram_invalid)?;
        let credentials = match Username::parse(&first.username) {
            Ok(name) => match self.store().user_by_username(&name).await? {
                Some(u) => self.store().credentials(u.id).await?,
                None => None,
            },
            Err(_) => None,
        };
        Ok(scram::ScramServer::start(
            mechanism.hash,
            first,
            credentials.as_ref(),
            self.config().scram_iterations,
        ))
    }

    /// Checks the client-final message of a SCRAM exchange and, on
    /// success, opens a session. Returns the caller and the server-final
    /// message. A failed proof counts as a failed log-in for throttling.
    pub async fn scram_finish(
        &self,
        server: scram::ScramServer,
        client_final: &[u8],
        context: LoginContext,
    ) -> CoreResult<(Caller, String)> {
        let username = server.username().to_owned();
        let outcome = server.finish(client_final);
        let server_final = match outcome {
            Ok(v) => v,
            // A binding mismatch is a wrong proof for this channel: someone
            // relayed the exchange, or the client is confused.
            Err(scram::ScramError::InvalidProof | scram::ScramError::BindingMismatch) => {
                if let Some(ip) = context.ip {
                    self.inner.throttle.failed(ip);
                }
                metrics::counter!("natter_login_failures_total").increment(1);
                return Err(CoreError::BadCredentials);
            }
            Err(e) => return Err(scram_invalid(e)),
        };
        let name = Username::parse(&username).map_err(|_| CoreError::BadCredentials)?;
        let user = self
            .store()
            .user_by_username(&name)
            .await?
            .ok_or(CoreError::BadCredentials)?;
        self.ensure_enabled(&user).await?;
        let outcome = self.open_session(user, context).await?;
        Ok((
            Caller {
                user: outcome.user,
                session: outcome.session.id,
            },
            server_final,
        ))
    }

    async fn ensure_enabled(&self, user: &User) -> CoreResult<()> {
        // Only a caller who proved the password learns that the account is
        // disabled.
        if self.store().user_disabled_at(user.id).await?.is_some() {
            return Err(CoreError::forbidden(
                "account_disabled",
                "this account has been disabled by an administrator",
            ));
        }
        Ok(())
    }

    /// Opens a session for a user whose credentials were checked.
    async fn open_session(&self, user: User, context: LoginContext) -> CoreResult<LoginOutcome> {
        let mut raw = [0u8; TOKEN_BYTES];
        rand::rng().fill_bytes(&mut raw);
        let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw);
        let created_at = now();
        let ttl = TimeDelta::from_std(self.config().session_ttl).unwrap_or(TimeDelta::days(30));
        let user_agent = context.user_agent.map(|ua| {
            ua.chars()
                .filter(|c| !c.is_control())
                .take(MAX_USER_AGENT)
                .collect()
        });
        let session = self
            .store()
            .create_session(NewSession {
                id: SessionId::new(),
                user_id: user.id,
                token_hash: token_hash(&token),
                created_at,
                expires_at: created_at + ttl,
                user_agent,
            })
            .await?;
        metrics::counter!("natter_logins_total").increment(1);
        Ok(LoginOutcome {
            token,
            session,
            user,
        })
    }

    /// Resolves a bearer token to its caller. Unknown, revoked and expired
    /// tokens are all simply unauthenticated.
    pub async fn authenticate(&self, token: &str) -> CoreResult<Caller> {
        if token.is_empty() || token.len() > 256 {
            return Err(CoreError::Unauthenticated);
        }
        let (session, user) = self
            .store()
            .session_by_token(&token_hash(token))
            .await?
            .ok_or(CoreError::Unauthenticated)?;
        if session.expires_at <= now() {
            return Err(CoreError::Unauthenticated);
        }
        Ok(Caller {
            user,
            session: session.id,
        })
    }

    /// Whether the caller's session still stands (not revoked, not
    /// expired), wherever it may have been revoked.
    pub async fn session_valid(&self, caller: &Caller) -> CoreResult<bool> {
        Ok(self.store().session_valid(caller.session, now()).await?)
    }

    /// Ends the caller's own session.
    pub async fn log_out(&self, caller: &Caller) -> CoreResult<()> {
        self.store()
            .revoke_session(caller.user.id, caller.session)
            .await?;
        self.revoke_streams(caller.user.id, Revoked::One(caller.session));
        Ok(())
    }

    pub async fn sessions(&self, caller: &Caller) -> CoreResult<Vec<Session>> {
        Ok(self.store().list_sessions(caller.user.id, now()).await?)
    }

    /// Revokes one of the caller's sessions (possibly the current one).
    pub async fn revoke_session(&self, caller: &Caller, id: SessionId) -> CoreResult<()> {
        if self.store().revoke_session(caller.user.id, id).await? {
            self.revoke_streams(caller.user.id, Revoked::One(id));
            Ok(())
        } else {
            Err(CoreError::not_found("session"))
        }
    }

    /// Changes the password after checking the current one; every other
    /// session of the account is revoked, the caller's stays.
    pub async fn change_password(
        &self,
        caller: &Caller,
        current: Password,
        new: Password,
        ip: Option<IpAddr>,
    ) -> CoreResult<()> {
        self.check_password(&caller.user.username, current, ip)
            .await
            .map_err(|e| match e {
                CoreError::BadCredentials => CoreError::forbidden(
                    "wrong_password",
                    "current_password is not the account's password",
                ),
                other => other,
            })?;
        let credentials = self.derive_credentials(new).await?;
        self.store()
            .set_credentials(caller.user.id, credentials, Some(caller.session))
            .await?;
        self.revoke_streams(caller.user.id, Revoked::AllBut(Some(caller.session)));
        Ok(())
    }

    /// Sets a new password without the old one, revoking every session;
    /// for administrators.
    pub async fn reset_password(&self, username: &Username, new: Password) -> CoreResult<()> {
        let user = self.user(username).await?;
        let credentials = self.derive_credentials(new).await?;
        self.store()
            .set_credentials(user.id, credentials, None)
            .await?;
        self.revoke_streams(user.id, Revoked::AllBut(None));
        Ok(())
    }

    /// Disables an account: it cannot log in, and every session ends now
    /// (streams on this node are closed; other processes' streams end at
    /// their next reconnect, as their tokens no longer work). For
    /// administrators.
    pub async fn disable_user(&self, username: &Username) -> CoreResult<()> {
        let user = self.user(username).await?;
        self.store().set_user_disabled(user.id, Some(now())).await?;
        self.revoke_streams(user.id, Revoked::AllBut(None));
        Ok(())
    }

    /// Lets a disabled account log in again. For administrators.
    pub async fn enable_user(&self, username: &Username) -> CoreResult<()> {
        let user = self.user(username).await?;
        self.store().set_user_disabled(user.id, None).await?;
        Ok(())
    }

    /// Sets or clears the caller's display name.
    pub async fn set_display_name(
        &self,
        caller: &Caller,
        name: Option<DisplayName>,
    ) -> CoreResult<User> {
        Ok(self.store().set_display_name(caller.user.id, name).await?)
    }

    /// Looks a user up by name.
    pub async fn user(&self, username: &Username) -> CoreResult<User> {
        self.store()
            .user_by_username(username)
            .await?
            .ok_or(CoreError::not_found("user"))
    }

    /// Searches the user directory by username prefix or display name.
    pub async fn search_users(&self, query: &str, limit: u32) -> CoreResult<Vec<User>> {
        let query = query.trim();
        if query.is_empty() {
            return Err(natter_types::ValidationError::new("q", "must not be empty").into());
        }
        if query.chars().count() > 64 {
            return Err(
                natter_types::ValidationError::new("q", "must be at most 64 characters").into(),
            );
        }
        Ok(self
            .store()
            .search_users(query, limit.clamp(1, MAX_SEARCH_RESULTS))
            .await?)
    }

    pub async fn contacts(&self, caller: &Caller) -> CoreResult<Vec<Contact>> {
        Ok(self.store().list_contacts(caller.user.id).await?)
    }

    /// Adds a contact or updates its name and groups; returns whether it
    /// is new.
    pub async fn put_contact(
        &self,
        caller: &Caller,
        username: &Username,
        name: Option<ContactName>,
        groups: ContactGroups,
    ) -> CoreResult<(Contact, bool)> {
        let contact = self.user(username).await?;
        if contact.id == caller.user.id {
            return Err(natter_types::ValidationError::new(
                "username",
                "you cannot add yourself as a contact",
            )
            .into());
        }
        Ok(self
            .store()
            .put_contact(caller.user.id, contact.id, name, groups, now())
            .await?)
    }

    pub async fn remove_contact(&self, caller: &Caller, username: &Username) -> CoreResult<()> {
        let contact = self.user(username).await?;
        if self
            .store()
            .remove_contact(caller.user.id, contact.id)
            .await?
        {
            Ok(())
        } else {
            Err(CoreError::not_found("contact"))
        }
    }
}
