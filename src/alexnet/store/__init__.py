"""What a run keeps on disk: the checkpoint record (checkpoint) and its validator (schema), the restricted
unpickler every load goes through (safeload), and the run folder's files and lock (runfolder).
"""
