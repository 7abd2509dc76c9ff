-- What Vigil changed in an alert to store it within its limits (values cut, labels dropped, a fingerprint hashed,
-- an impossible startsAt replaced by the receipt time), with what was sent where it is small enough to keep.
-- NULL for an alert stored as sent. See shared/alert_limits.py and AlertAdjustments in shared/contracts.py.
ALTER TABLE alerts ADD COLUMN adjustments jsonb;
