"""What a store holds and what its runs were charged, for people (``report``), with HTML bars (``charts``) and
the outcomes' names in Chinese and English (``labels``)."""
