-- When a referral was erased (NULL while it holds patient data). Work that
-- was in flight when it was erased (a delivery's answer, a provider's
-- callback, a cancellation) reads this mark, in its own transaction and
-- holding the referral's row, and keeps nothing of the patient.
ALTER TABLE referrals ADD COLUMN erased_at TEXT;
UPDATE referrals SET erased_at = last_updated
    WHERE nhs_number IS NULL AND resource LIKE '%"code":"erased"%';

-- Refused callbacks used to keep the refusal's wording, which could quote
-- the values the provider sent (an NHS number, a name): keep only that it
-- was refused.
UPDATE inbound_events SET outcome = 'refused' WHERE outcome LIKE 'refused:%';
