//! API bearer tokens: stored as a salted hash of their secret part, found
//! by their public id, revoked (never deleted) so the audit trail keeps
//! naming them.

use async_trait::async_trait;

use super::{SqlStore, StoreError, Token, TokenStore, rows::TokenRow};

const INSERT_TOKEN: &str = "INSERT INTO api_tokens \
    (id, role, referrer_id, provider_id, salt, hash, created_at, revoked_at, clinical_service_id) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, NULL, $8)";
const SELECT_TOKEN: &str = "SELECT * FROM api_tokens WHERE id = $1";
const SELECT_TOKENS: &str = "SELECT * FROM api_tokens ORDER BY created_at, id";
const REVOKE_TOKEN: &str =
    "UPDATE api_tokens SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL";

macro_rules! impl_token_store {
    ($db:ty) => {
        #[async_trait]
        impl TokenStore for SqlStore<$db> {
            async fn insert_token(&self, t: Token) -> Result<(), StoreError> {
                sqlx::query(INSERT_TOKEN)
                    .bind(&t.id)
                    .bind(&t.role)
                    .bind(&t.referrer_id)
                    .bind(&t.provider_id)
                    .bind(&t.salt)
                    .bind(&t.hash)
                    .bind(&t.created_at)
                    .bind(&t.clinical_service_id)
                    .execute(&self.writer)
                    .await?;
                Ok(())
            }

            async fn token(&self, id: &str) -> Result<Option<Token>, StoreError> {
                Ok(sqlx::query_as::<_, TokenRow>(SELECT_TOKEN)
                    .bind(id)
                    .fetch_optional(&self.reader)
                    .await?
                    .map(Token::from))
            }

            async fn tokens(&self) -> Result<Vec<Token>, StoreError> {
                Ok(sqlx::query_as::<_, TokenRow>(SELECT_TOKENS)
                    .fetch_all(&self.reader)
                    .await?
                    .into_iter()
                    .map(Token::from)
                    .collect())
            }

            async fn revoke_token(&self, id: &str, at: &str) -> Result<bool, StoreError> {
                Ok(sqlx::query(REVOKE_TOKEN)
                    .bind(id)
                    .bind(at)
                    .execute(&self.writer)
                    .await?
                    .rows_affected()
                    > 0)
            }
        }
    };
}

impl_token_store!(sqlx::Sqlite);
impl_token_store!(sqlx::Postgres);
