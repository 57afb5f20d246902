"""turnout.state"""
