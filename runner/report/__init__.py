"""What ``python -m runner.compare`` shows, built from the plain files of run folders and never from a pickle or
a config's interpolations: the records read (``runs``), the table of differing settings and metrics
(``table``), its text renderings (``render``), the learning-curve figure (``figures``) and the HTML page
(``page``). Nothing here imports torch, so comparing starts at once.
"""
