"""The local control socket (profile section 11): the daemon's server and the CLI's client."""
