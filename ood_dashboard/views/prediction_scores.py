from ood_dashboard.score_page import render

render("prediction", "How unsure a classifier trained on the train (fit) classes is about each image: "
                     "drag the red line (or type a percentile) and look at the images on both sides of it.")
