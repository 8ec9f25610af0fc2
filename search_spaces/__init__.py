"""Ready-made search spaces, written with the public DSL exactly as a user would write theirs.

Each module defines ``SPACE``; ``nasbench.load_space(name)`` loads it by module name.
"""
