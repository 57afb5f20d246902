"""turnout.config: the configuration model shared by admin, proxy, monitor and manager."""
