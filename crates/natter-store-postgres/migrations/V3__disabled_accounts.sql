-- Accounts an administrator disabled: they cannot log in, and their
-- sessions were deleted when they were disabled. NULL: enabled.
ALTER TABLE users ADD COLUMN disabled_at TIMESTAMPTZ;
