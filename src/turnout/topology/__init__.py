"""turnout.topology"""
