"""turnout.protocol"""
