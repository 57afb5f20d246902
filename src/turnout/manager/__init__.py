"""turnout.manager"""
