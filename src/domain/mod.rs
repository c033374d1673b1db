//! The domain's vocabulary: the typed ids, endpoints, message kinds and
//! states, actors, NHS numbers and times that every area speaks.
//!
//! Each type is checked once, where a value enters Signpost (configuration,
//! a request, a database row), so code that holds one never checks again.
//! Every type is `Display` as the text it is stored and logged as, and
//! `FromStr` from that text, so the database, the admin API and the CLI all
//! agree on one spelling. None of it knows about HTTP or SQL.

mod actor;
mod endpoint;
mod ids;
mod message;
pub mod model;
mod nhs_number;
mod task_status;
mod time;

pub use self::{
    actor::Actor,
    endpoint::Endpoint,
    ids::{ClinicalServiceId, IdError, MessageId, ProviderId, ReferralId, ReferrerId, TaskId},
    message::{MessageKind, MessageState, UnknownCode},
    nhs_number::{InvalidNhsNumber, NhsNumber},
    task_status::TaskStatus,
    time::{Clock, ManualClock, SystemClock, Timestamp},
};

/// Implements `sqlx::Type`, `Encode` and `Decode` for a type stored as text,
/// through its `Display` and `FromStr`, for every database whose `String`
/// and `&str` are text (SQLite and PostgreSQL both).
macro_rules! stored_as_text {
    ($($ty:ty),* $(,)?) => {$(
        impl<DB: sqlx::Database> sqlx::Type<DB> for $ty
        where
            String: sqlx::Type<DB>,
        {
            fn type_info() -> DB::TypeInfo {
                <String as sqlx::Type<DB>>::type_info()
            }
            fn compatible(ty: &DB::TypeInfo) -> bool {
                <String as sqlx::Type<DB>>::compatible(ty)
            }
        }

        impl<'q, DB: sqlx::Database> sqlx::Encode<'q, DB> for $ty
        where
            String: sqlx::Encode<'q, DB>,
        {
            fn encode_by_ref(
                &self,
                buf: &mut <DB as sqlx::Database>::ArgumentBuffer,
            ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
                <String as sqlx::Encode<'q, DB>>::encode(self.to_string(), buf)
            }
        }

        impl<'r, DB: sqlx::Database> sqlx::Decode<'r, DB> for $ty
        where
            &'r str: sqlx::Decode<'r, DB>,
        {
            fn decode(
                value: <DB as sqlx::Database>::ValueRef<'r>,
            ) -> Result<Self, sqlx::error::BoxDynError> {
                let text = <&'r str as sqlx::Decode<'r, DB>>::decode(value)?;
                Ok(text.parse()?)
            }
        }
    )*};
}
pub(crate) use stored_as_text;
