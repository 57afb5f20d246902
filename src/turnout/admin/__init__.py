"""turnout.admin"""
