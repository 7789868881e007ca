"""The closed loop: drift alerts become retraining runs that end in a promotion or a rollback."""
