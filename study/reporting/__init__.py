"""Results turned into what a reader sees: figures (`plots`, `latent_plots`), numbers as
words (`numbers`), the report's facts and the checks that guard its verdict sentences
(`facts`, `claims`), the typeset PDF's layout check (`page_check`), and the explorer page's
data (`explorer_page`).
"""
