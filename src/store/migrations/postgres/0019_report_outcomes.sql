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
