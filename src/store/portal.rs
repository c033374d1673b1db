//! The provider portal's accounts and sessions, and the reads its pages
//! make: a provider's referrals with their Tasks, and a Task's history.
//! Secrets are stored as hashes only (see `migrations/*/0012_portal.sql`).

use std::collections::HashMap;

use async_trait::async_trait;

use super::{
    Referral, SqlStore, StoreError, Task,
    rows::{ReferralRow, TaskRow, referrals},
};
use crate::domain::{ProviderId, ReferralId, TaskId};

/// A portal account: one person at one provider.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct PortalUser {
    pub id: String,
    pub provider_id: ProviderId,
    pub email: String,
    pub name: Option<String>,
    /// argon2id, PHC string; `None` until enrolled.
    pub password_hash: Option<String>,
    /// Base32; `None` until enrolled.
    pub totp_secret: Option<String>,
    pub totp_last_step: i64,
    pub enrolment_hash: Option<String>,
    pub enrolment_expires_at: Option<i64>,
    pub created_at: i64,
    pub disabled_at: Option<i64>,
}

/// A signed-in session (found by the hash of its cookie).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct PortalSession {
    pub token_hash: String,
    pub user_id: String,
    pub csrf_token: String,
    pub created_at: i64,
    pub last_seen_at: i64,
}

/// One change of a Task, as `task_events` records it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct TaskEvent {
    pub from_status: Option<String>,
    pub to_status: String,
    pub actor: String,
    pub reason: Option<String>,
    pub at: String,
}

/// What the portal stores and reads.
#[async_trait]
pub trait PortalStore: Send + Sync + 'static {
    /// A new, not yet enrolled account; `false` if the email is taken.
    async fn insert_portal_user(&self, user: PortalUser) -> Result<bool, StoreError>;
    async fn portal_user(&self, id: &str) -> Result<Option<PortalUser>, StoreError>;
    async fn portal_user_by_email(&self, email: &str) -> Result<Option<PortalUser>, StoreError>;
    async fn portal_user_by_enrolment(&self, hash: &str) -> Result<Option<PortalUser>, StoreError>;
    /// Every account, oldest first.
    async fn portal_users(&self) -> Result<Vec<PortalUser>, StoreError>;
    /// Finish enrolment: set the password and TOTP secret (and the step of
    /// the code that confirmed it) and spend the link; `false` if the link
    /// was spent meanwhile.
    async fn complete_enrolment(
        &self,
        enrolment_hash: &str,
        password_hash: &str,
        totp_secret: &str,
        totp_step: i64,
    ) -> Result<bool, StoreError>;
    /// A new enrolment link: the password and authenticator are cleared,
    /// the account re-enabled, and its sessions ended.
    async fn reset_portal_user(
        &self,
        id: &str,
        enrolment_hash: &str,
        expires_at: i64,
    ) -> Result<bool, StoreError>;
    /// Disable an account and end its sessions; `false` if no such account.
    async fn disable_portal_user(&self, id: &str, at: i64) -> Result<bool, StoreError>;
    /// Spend a TOTP time step: `false` if it (or a later one) was used.
    async fn use_totp_step(&self, user_id: &str, step: i64) -> Result<bool, StoreError>;

    async fn insert_portal_session(&self, session: PortalSession) -> Result<(), StoreError>;
    async fn portal_session(&self, token_hash: &str) -> Result<Option<PortalSession>, StoreError>;
    async fn touch_portal_session(&self, token_hash: &str, at: i64) -> Result<(), StoreError>;
    async fn delete_portal_session(&self, token_hash: &str) -> Result<(), StoreError>;

    /// The provider's referrals with their Tasks, newest first, at most
    /// `limit`, **without their resources** (`resource` is empty in both):
    /// a list needs ids, versions and statuses, and reading every
    /// referral's and Task's JSON made each list request move megabytes.
    /// Read a referral whole with [`super::ReferralStore::referral`].
    async fn provider_referrals(
        &self,
        provider_id: &ProviderId,
        limit: i64,
    ) -> Result<Vec<(Referral, Task)>, StoreError>;
    /// A Task's changes, first first.
    async fn task_history(&self, task_id: &TaskId) -> Result<Vec<TaskEvent>, StoreError>;
}

const INSERT_USER: &str = "INSERT INTO portal_users (id, provider_id, email, name, password_hash, \
    totp_secret, totp_last_step, enrolment_hash, enrolment_expires_at, created_at, disabled_at) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT (email) DO NOTHING";
const SELECT_USER: &str = "SELECT * FROM portal_users WHERE id = $1";
const SELECT_USER_BY_EMAIL: &str = "SELECT * FROM portal_users WHERE email = $1";
const SELECT_USER_BY_ENROLMENT: &str = "SELECT * FROM portal_users WHERE enrolment_hash = $1";
const SELECT_USERS: &str = "SELECT * FROM portal_users ORDER BY created_at, id";
const COMPLETE_ENROLMENT: &str = "UPDATE portal_users SET password_hash = $2, totp_secret = $3, \
    totp_last_step = $4, enrolment_hash = NULL, enrolment_expires_at = NULL \
    WHERE enrolment_hash = $1";
const RESET_USER: &str = "UPDATE portal_users SET password_hash = NULL, totp_secret = NULL, \
    totp_last_step = 0, enrolment_hash = $2, enrolment_expires_at = $3, disabled_at = NULL \
    WHERE id = $1";
const DISABLE_USER: &str = "UPDATE portal_users SET disabled_at = $2, enrolment_hash = NULL, \
    enrolment_expires_at = NULL WHERE id = $1";
const USE_TOTP_STEP: &str =
    "UPDATE portal_users SET totp_last_step = $2 WHERE id = $1 AND totp_last_step < $2";
const DELETE_USER_SESSIONS: &str = "DELETE FROM portal_sessions WHERE user_id = $1";
const INSERT_SESSION: &str = "INSERT INTO portal_sessions \
    (token_hash, user_id, csrf_token, created_at, last_seen_at) VALUES ($1, $2, $3, $4, $5)";
const SELECT_SESSION: &str = "SELECT * FROM portal_sessions WHERE token_hash = $1";
const TOUCH_SESSION: &str = "UPDATE portal_sessions SET last_seen_at = $2 WHERE token_hash = $1";
const DELETE_SESSION: &str = "DELETE FROM portal_sessions WHERE token_hash = $1";
const SELECT_PROVIDER_REFERRALS: &str = "SELECT id, referrer_id, identifier_system, \
    identifier_value, provider_id, version_id, last_updated, '' AS resource, nhs_number, erased_at \
    FROM referrals WHERE provider_id = $1 ORDER BY id DESC LIMIT $2";
const SELECT_PROVIDER_TASKS: &str = "SELECT t.id, t.referral_id, t.status, t.version_id, \
    t.last_updated, '' AS resource FROM tasks t JOIN referrals r ON r.id = t.referral_id \
    WHERE r.provider_id = $1 AND r.id >= $2";
const SELECT_TASK_HISTORY: &str = "SELECT from_status, to_status, actor, reason, at \
    FROM task_events WHERE task_id = $1 ORDER BY seq";

macro_rules! impl_portal_store {
    ($db:ty) => {
        #[async_trait]
        impl PortalStore for SqlStore<$db> {
            async fn insert_portal_user(&self, u: PortalUser) -> Result<bool, StoreError> {
                Ok(sqlx::query(INSERT_USER)
                    .bind(&u.id)
                    .bind(&u.provider_id)
                    .bind(&u.email)
                    .bind(&u.name)
                    .bind(&u.password_hash)
                    .bind(&u.totp_secret)
                    .bind(u.totp_last_step)
                    .bind(&u.enrolment_hash)
                    .bind(u.enrolment_expires_at)
                    .bind(u.created_at)
                    .bind(u.disabled_at)
                    .execute(&self.writer)
                    .await?
                    .rows_affected()
                    > 0)
            }

            async fn portal_user(&self, id: &str) -> Result<Option<PortalUser>, StoreError> {
                Ok(sqlx::query_as(SELECT_USER)
                    .bind(id)
                    .fetch_optional(&self.reader)
                    .await?)
            }

            async fn portal_user_by_email(
                &self,
                email: &str,
            ) -> Result<Option<PortalUser>, StoreError> {
                Ok(sqlx::query_as(SELECT_USER_BY_EMAIL)
                    .bind(email)
                    .fetch_optional(&self.reader)
                    .await?)
            }

            async fn portal_user_by_enrolment(
                &self,
                hash: &str,
            ) -> Result<Option<PortalUser>, StoreError> {
                Ok(sqlx::query_as(SELECT_USER_BY_ENROLMENT)
                    .bind(hash)
                    .fetch_optional(&self.reader)
                    .await?)
            }

            async fn portal_users(&self) -> Result<Vec<PortalUser>, StoreError> {
                Ok(sqlx::query_as(SELECT_USERS).fetch_all(&self.reader).await?)
            }

            async fn complete_enrolment(
                &self,
                enrolment_hash: &str,
                password_hash: &str,
                totp_secret: &str,
                totp_step: i64,
            ) -> Result<bool, StoreError> {
                Ok(sqlx::query(COMPLETE_ENROLMENT)
                    .bind(enrolment_hash)
                    .bind(password_hash)
                    .bind(totp_secret)
                    .bind(totp_step)
                    .execute(&self.writer)
                    .await?
                    .rows_affected()
                    > 0)
            }

            async fn reset_portal_user(
                &self,
                id: &str,
                enrolment_hash: &str,
                expires_at: i64,
            ) -> Result<bool, StoreError> {
                let mut tx = self.writer.begin().await?;
                let found = sqlx::query(RESET_USER)
                    .bind(id)
                    .bind(enrolment_hash)
                    .bind(expires_at)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected()
                    > 0;
                sqlx::query(DELETE_USER_SESSIONS)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(found)
            }

            async fn disable_portal_user(&self, id: &str, at: i64) -> Result<bool, StoreError> {
                let mut tx = self.writer.begin().await?;
                let found = sqlx::query(DISABLE_USER)
                    .bind(id)
                    .bind(at)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected()
                    > 0;
                sqlx::query(DELETE_USER_SESSIONS)
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(found)
            }

            async fn use_totp_step(&self, user_id: &str, step: i64) -> Result<bool, StoreError> {
                Ok(sqlx::query(USE_TOTP_STEP)
                    .bind(user_id)
                    .bind(step)
                    .execute(&self.writer)
                    .await?
                    .rows_affected()
                    > 0)
            }

            async fn insert_portal_session(&self, s: PortalSession) -> Result<(), StoreError> {
                sqlx::query(INSERT_SESSION)
                    .bind(&s.token_hash)
                    .bind(&s.user_id)
                    .bind(&s.csrf_token)
                    .bind(s.created_at)
                    .bind(s.last_seen_at)
                    .execute(&self.writer)
                    .await?;
                Ok(())
            }

            async fn portal_session(
                &self,
                token_hash: &str,
            ) -> Result<Option<PortalSession>, StoreError> {
                Ok(sqlx::query_as(SELECT_SESSION)
                    .bind(token_hash)
                    .fetch_optional(&self.reader)
                    .await?)
            }

            async fn touch_portal_session(
                &self,
                token_hash: &str,
                at: i64,
            ) -> Result<(), StoreError> {
                sqlx::query(TOUCH_SESSION)
                    .bind(token_hash)
                    .bind(at)
                    .execute(&self.writer)
                    .await?;
                Ok(())
            }

            async fn delete_portal_session(&self, token_hash: &str) -> Result<(), StoreError> {
                sqlx::query(DELETE_SESSION)
                    .bind(token_hash)
                    .execute(&self.writer)
                    .await?;
                Ok(())
            }

            async fn provider_referrals(
                &self,
                provider_id: &ProviderId,
                limit: i64,
            ) -> Result<Vec<(Referral, Task)>, StoreError> {
                let rows: Vec<ReferralRow> = sqlx::query_as(SELECT_PROVIDER_REFERRALS)
                    .bind(provider_id)
                    .bind(limit)
                    .fetch_all(&self.reader)
                    .await?;
                let found = referrals(rows)?;
                // Ids are time-ordered: the Tasks of the referrals listed are
                // those of referrals at or after the oldest one listed.
                let Some(oldest) = found.last().map(|r| r.id.clone()) else {
                    return Ok(Vec::new());
                };
                let tasks: Vec<TaskRow> = sqlx::query_as(SELECT_PROVIDER_TASKS)
                    .bind(provider_id)
                    .bind(&oldest)
                    .fetch_all(&self.reader)
                    .await?;
                let mut by_referral: HashMap<ReferralId, Task> = tasks
                    .into_iter()
                    .map(Task::from)
                    .map(|t| (t.referral_id.clone(), t))
                    .collect();
                Ok(found
                    .into_iter()
                    .filter_map(|r| by_referral.remove(&r.id).map(|t| (r, t)))
                    .collect())
            }

            async fn task_history(&self, task_id: &TaskId) -> Result<Vec<TaskEvent>, StoreError> {
                Ok(sqlx::query_as(SELECT_TASK_HISTORY)
                    .bind(task_id)
                    .fetch_all(&self.reader)
                    .await?)
            }
        }
    };
}

impl_portal_store!(sqlx::Sqlite);
impl_portal_store!(sqlx::Postgres);
