"""`python -m ptft.finetune`: the finetune rule's command (plain, or under ptft.launch / torchrun)."""

from ptft.finetune.job import main

main()
