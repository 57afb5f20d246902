"""turnout.monitor"""
