"""The rules of Parley: services write (named ``<entity>_<action>``, keyword-only arguments)."""
