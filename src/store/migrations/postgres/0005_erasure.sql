-- Erasure finds a patient's referrals by NHS number.
ALTER TABLE referrals ADD COLUMN nhs_number TEXT;
CREATE INDEX referrals_by_nhs_number ON referrals (nhs_number);
