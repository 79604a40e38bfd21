"""The bulk engine every bulk job (``score``, ``forms``) runs on: inputs listed, archives walked, bytes
read (the Ray Data datasource), labels matched; the resource plan and the inference actors' pool; one
inference-actor base that loads its models once; the driver that pulls the rows, shows the live line
and commits them; the output folder, its lock and resume. A bulk job adds only its page stage and its
answer schema (``scoring.pipeline``, ``forms.pipeline``).
"""
