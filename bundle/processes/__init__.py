"""Process housekeeping: finding and stopping process trees, and resetting state after a fork."""
