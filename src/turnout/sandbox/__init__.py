"""turnout.sandbox"""
