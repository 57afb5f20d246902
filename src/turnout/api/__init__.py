"""turnout.api"""
