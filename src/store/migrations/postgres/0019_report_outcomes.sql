-- Wellbeing outcomes and the reason a referral was declined or rejected,
-- for reports (`reports::outcomes`, README "Reports"), kept in the same
-- transaction as the Task change that reported them. ONS4: the four items
-- (0-10) at the start and at the end of support, never summed. SWEMWBS:
-- the metric score in hundredths (700-3500), converted from the raw total
-- with the published table. The first start and the latest end are kept.
ALTER TABLE report_facts ADD COLUMN ons4_start_1 BIGINT;
ALTER TABLE report_facts ADD COLUMN ons4_start_2 BIGINT;
ALTER TABLE report_facts ADD COLUMN ons4_start_3 BIGINT;
ALTER TABLE report_facts ADD COLUMN ons4_start_4 BIGINT;
ALTER TABLE report_facts ADD COLUMN ons4_end_1 BIGINT;
ALTER TABLE report_facts ADD COLUMN ons4_end_2 BIGINT;
ALTER TABLE report_facts ADD COLUMN ons4_end_3 BIGINT;
ALTER TABLE report_facts ADD COLUMN ons4_end_4 BIGINT;
ALTER TABLE report_facts ADD COLUMN swemwbs_start BIGINT;
ALTER TABLE report_facts ADD COLUMN swemwbs_end BIGINT;
-- Why a declined or rejected referral ended: the code on the Task's
-- statusReason where it is coded, `other` where it is not; `none` for
-- every other ending and while open.
ALTER TABLE report_facts ADD COLUMN ending_reason TEXT NOT NULL DEFAULT 'none';
-- The outcome changes read only the referrals with an end score: a few,
-- so these partial indexes are small, and each covers what its part of
-- the query reads (the strata and the scores), so a period's changes are
-- a range scan of them alone.
CREATE INDEX report_facts_ons4 ON report_facts (referred_at, provider, scheme, ods,
    profession, age_band, sex, month, ending_reason, ons4_start_1, ons4_start_2,
    ons4_start_3, ons4_start_4, ons4_end_1, ons4_end_2, ons4_end_3, ons4_end_4)
    WHERE ons4_end_1 IS NOT NULL;
CREATE INDEX report_facts_swemwbs ON report_facts (referred_at, provider, scheme, ods,
    profession, age_band, sex, month, ending_reason, swemwbs_start, swemwbs_end)
    WHERE swemwbs_end IS NOT NULL;
